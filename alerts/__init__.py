"""The alerts stage: rules -> delivery log -> channels (email, Slack, webhook, console, file).

:class:`alerts.service.AlertsService` consumes story events and feed-health changes,
decides with :mod:`alerts.rules` what deserves an alert, records every (alert, channel)
delivery in the store (:mod:`alerts.deliveries`) before sending it, and sends through the
notifiers registered in :data:`alerts.notifiers.NOTIFIERS`.
"""
