from django import template

from alarms.models import AlarmRule, Severity

register = template.Library()


@register.inclusion_tag("alarms/device_panel.html")
def device_alarms(device, can_edit_rules):
    """The device page's alarms and rules, and for its owner and staff, the rule form."""
    return {"device": device, "can_edit_rules": can_edit_rules, "severities": Severity.values, "ops": AlarmRule.Op.values}
