# One image for every Telehub process: web (daphne), bridge (runbridge), migrate, simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HUB_DATA_DIR=/data

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# /broker-auth: where the bridge writes the broker's logins (a volume shared with Mosquitto).
RUN useradd --system --home-dir /app telehub && mkdir -p /data /broker-auth && chown telehub /data /broker-auth
USER telehub

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "hub.asgi:application"]
