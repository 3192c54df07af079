// The alert rules. An alert is one object in `alerts` below: name, expression, wait, severity, summary
// and description. Every alert gets a runbook_url to the README section named after it (write that
// section), and one unit test at least in prometheus/alerts.test.yml (alerts.hours.test.yml when it waits
// hours), firing and not firing.
local words = import 'lib/words.libsonnet';
local oneLine(text) = std.strReplace(std.rstripChars(text, '\n'), '\n', ' ');

{
  local c = $._config,
  // The values alert text quotes, in words.
  local t = c {
    exporterDownFor: words.duration(c.exporterDownFor),
    reportFailingFor: words.duration(c.reportFailingFor),
    noApprovalBacklogFor: words.duration(c.noApprovalBacklogFor),
    customerBehindFor: words.duration(c.customerBehindFor),
    installFailuresRisingWindow: words.duration(c.installFailuresRisingWindow),
    customerBehindThreshold: words.percent(c.customerBehindThreshold),
    staleShareFor: words.duration(c.staleShareFor),
    staleShareThreshold: words.percent(c.staleShareThreshold),
    endOfLifeFor: words.duration(c.endOfLifeFor),
    complianceFor: words.duration(c.complianceFor),
    complianceThreshold: words.percent(c.complianceThreshold),
  },

  local alerts = [
    // Prometheus cannot scrape the exporter: every patch metric of that target is missing.
    {
      alert: 'NCentralPatchExporterDown',
      expr: 'up{%(selector)s} == 0' % c,
      'for': c.exporterDownFor,
      labels: { severity: 'critical' },
      annotations: {
        summary: 'N-central patch exporter {{ $labels.instance }} is down',
        description: oneLine(|||
          Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for more than
          %(exporterDownFor)s (up = {{ $value }}). No N-central patch metrics are collected from it.
        ||| % t),
      },
    },

    // The last run of a report failed, and no run has succeeded since. The exporter keeps serving the last
    // good data, so dashboards look fine while they age. The description says what is certain when it
    // fires: the last run's reason and the failure counters (a window such as increase(...[1h]) sees
    // nothing of failures counted before Prometheus's first scrape, e.g. since start-up).
    {
      alert: 'NCentralPatchReportFailing',
      expr: 'ncentral_patch_report_last_run_success{%(selector)s} == 0' % c,
      'for': c.reportFailingFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: 'N-central patch report {{ $labels.report }} is failing on {{ $labels.instance }}',
        description: oneLine(|||
          Runs of report {{ $labels.report }} on {{ $labels.instance }} have been failing for more than
          %(reportFailingFor)s (last_run_success = {{ $value }}).
          {{ with printf `ncentral_patch_report_last_run_failure_reason{%(selector)s,instance=%%q,report=%%q}` $labels.instance $labels.report | query }}The last run failed with reason {{ (. | first).Labels.reason }}.{{ else }}The last run's reason is not known.{{ end }}
          Failed runs counted by the exporter, by reason:
          {{ with printf `sort_desc(ncentral_patch_report_failures_total{%(selector)s,instance=%%q,report=%%q} > 0)` $labels.instance $labels.report | query }}{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s.Labels.reason }}: {{ $s.Value | printf "%%.0f" }}{{ end }}{{ else }}none{{ end }}.
          The exporter log has the error.
        ||| % t),
      },
    },

    // No successful run for longer than `stalenessFactor` times the collection's interval, which the
    // exporter exports per report (and for the customer scan). A report that has not succeeded once since
    // the exporter started has no timestamp yet; NCentralPatchReportFailing covers it.
    {
      alert: 'NCentralPatchDataStale',
      expr: |||-
        time() - ncentral_patch_report_last_success_timestamp_seconds{%(selector)s}
        > %(stalenessFactor)g * ncentral_patch_report_interval_seconds{%(selector)s}
      ||| % c,
      'for': c.dataStaleFor,
      labels: { severity: 'critical' },
      annotations: {
        summary: 'N-central patch data of report {{ $labels.report }} on {{ $labels.instance }} is stale',
        description: oneLine(|||
          The last successful run of report {{ $labels.report }} on {{ $labels.instance }} was
          {{ $value | humanizeDuration }} ago, more than %(stalenessFactor)g times its interval
          ({{ with printf `ncentral_patch_report_interval_seconds{%(selector)s,instance=%%q,report=%%q}` $labels.instance $labels.report | query }}{{ . | first | value | humanizeDuration }}{{ end }}).
          The patch metrics no longer reflect N-central.
        ||| % c),
      },
    },

    // Failed patch installs in the report. Informational: most estates always have a few.
    {
      alert: 'NCentralPatchInstallFailuresPresent',
      expr: 'sum by (job, instance, report, patch_type) (ncentral_patch_installs{%(selector)s, install_status="failed"}) > 0' % c,
      'for': c.installFailuresPresentFor,
      labels: { severity: 'info' },
      annotations: {
        summary: '{{ $value }} failed {{ $labels.patch_type }} patch installs in report {{ $labels.report }}',
        description: oneLine(|||
          Report {{ $labels.report }} on {{ $labels.instance }} counts {{ $value }} failed installs of
          {{ $labels.patch_type }} patches. Review them in N-central (Patch Status).
        |||),
      },
    },

    // More failed installs than at any point in the window, e.g. after a patch window.
    {
      alert: 'NCentralPatchInstallFailuresRising',
      expr: |||-
        sum by (job, instance, report, patch_type) (
          ncentral_patch_installs{%(selector)s, install_status="failed"}
          - min_over_time(ncentral_patch_installs{%(selector)s, install_status="failed"}[%(installFailuresRisingWindow)s])
        ) > 0
      ||| % c,
      'for': c.installFailuresRisingFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Failed {{ $labels.patch_type }} patch installs are rising in report {{ $labels.report }}',
        description: oneLine(|||
          Report {{ $labels.report }} on {{ $labels.instance }} counts {{ $value }} more failed installs of
          {{ $labels.patch_type }} patches than its lowest count in the last %(installFailuresRisingWindow)s.
        ||| % t),
      },
    },

    // Patches waiting for an approval decision, per device class. For a report's total instead, sum by
    // (job, instance, report).
    {
      alert: 'NCentralPatchNoApprovalBacklog',
      expr: |||-
        sum by (job, instance, report, device_class) (
          ncentral_patch_approvals{%(selector)s, approval_status="no_approval"}
        ) > %(noApprovalBacklogThreshold)g
      ||| % c,
      'for': c.noApprovalBacklogFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: '{{ $value }} patches await approval for {{ $labels.device_class }}',
        description: oneLine(|||
          Report {{ $labels.report }} on {{ $labels.instance }} has counted {{ $value }} patches with no
          approval decision for device class "{{ $labels.device_class }}" for more than %(noApprovalBacklogFor)s
          (threshold %(noApprovalBacklogThreshold)s). Approve or decline them in N-central.
        ||| % t),
      },
    },

    // A customer's share of devices with an active issue on a patch service (failed, warning, stale...)
    // stays high; from the customer scan. To leave small customers out, append
    // `and on (job, instance, customer_id) sum by (job, instance, customer_id) (ncentral_customer_devices) >= 10`.
    {
      alert: 'NCentralPatchCustomerBehind',
      expr: |||-
        sum by (job, instance, customer_id, customer) (ncentral_customer_patch_issue_devices{%(selector)s})
        / sum by (job, instance, customer_id, customer) (ncentral_customer_devices{%(selector)s})
        > %(customerBehindThreshold)g
      ||| % c,
      'for': c.customerBehindFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: '{{ $value | humanizePercentage }} of the devices of customer {{ $labels.customer }} have a patch problem',
        description: oneLine(|||
          For more than %(customerBehindFor)s, {{ $value | humanizePercentage }} of the devices of customer
          "{{ $labels.customer }}" (id {{ $labels.customer_id }}) on {{ $labels.instance }} have had an active
          issue on a patch service (threshold %(customerBehindThreshold)s). Review them in N-central (Patch Status).
        ||| % t),
      },
    },

    // A customer's share of devices whose agents stopped checking in (longer ago than customers.stale_after,
    // or never) stays high: those devices raise no new active issues, so their patch status is as old as
    // their last check-in and the customer looks healthier than it is. From the customer scan.
    {
      alert: 'NCentralCustomerAgentsStale',
      expr: |||-
        sum by (job, instance, customer_id, customer) (ncentral_customer_stale_devices{%(selector)s})
        / sum by (job, instance, customer_id, customer) (ncentral_customer_devices{%(selector)s})
        > %(staleShareThreshold)g
      ||| % c,
      'for': c.staleShareFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: "{{ $value | humanizePercentage }} of the agents of customer {{ $labels.customer }} stopped checking in",
        description: oneLine(|||
          For more than %(staleShareFor)s, {{ $value | humanizePercentage }} of the devices of customer
          "{{ $labels.customer }}" (id {{ $labels.customer_id }}) on {{ $labels.instance }} have had an agent
          that last checked in longer ago than customers.stale_after, or never (threshold
          %(staleShareThreshold)s). Their patch status is as old as their last check-in.
        ||| % t),
      },
    },

    // Devices on an operating system its vendor no longer patches (customers.end_of_life_os), per customer:
    // no approval or install fixes them, only an upgrade. Informational.
    {
      alert: 'NCentralEndOfLifeDevices',
      expr: |||-
        sum by (job, instance, customer_id, customer) (
          ncentral_customer_os_devices{%(selector)s, end_of_life="true"}
        ) > 0
      ||| % c,
      'for': c.endOfLifeFor,
      labels: { severity: 'info' },
      annotations: {
        summary: 'Customer {{ $labels.customer }} has {{ $value }} devices on an end-of-life operating system',
        description: oneLine(|||
          Customer "{{ $labels.customer }}" (id {{ $labels.customer_id }}) on {{ $labels.instance }} has
          {{ $value }} devices on an operating system its vendor no longer patches (customers.end_of_life_os).
          ncentral_customer_os_devices{end_of_life="true"} names the systems. Plan their upgrade.
        ||| % t),
      },
    },

    // A customer's patch compliance (devices whose patch service is normal over all its devices with a
    // patch service) stays low; from the patch status scan. A customer without a single normal device
    // counts as 0 %, one with no patch service at all is not measured.
    {
      alert: 'NCentralCustomerPatchCompliance',
      expr: |||-
        (
          sum by (job, instance, customer_id, customer) (ncentral_customer_patch_status_devices{%(selector)s, state="normal"})
          or 0 * sum by (job, instance, customer_id, customer) (ncentral_customer_patch_status_devices{%(selector)s, state!="not_monitored"})
        )
        / sum by (job, instance, customer_id, customer) (ncentral_customer_patch_status_devices{%(selector)s, state!="not_monitored"})
        < %(complianceThreshold)g
      ||| % c,
      'for': c.complianceFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Patch compliance of customer {{ $labels.customer }} is {{ $value | humanizePercentage }}',
        description: oneLine(|||
          For more than %(complianceFor)s, only {{ $value | humanizePercentage }} of the devices with a patch
          service of customer "{{ $labels.customer }}" (id {{ $labels.customer_id }}) on {{ $labels.instance }}
          have had it in state normal (threshold %(complianceThreshold)s). Review them in N-central (Patch Status).
        ||| % t),
      },
    },

    // Devices whose patch service has been in a state other than normal for longer than the exporter's
    // `patch_status.sla` (from the service's transitionTime): the problems MSP contracts are written
    // against. Fires while any such device is counted.
    {
      alert: 'NCentralCustomerPatchSLABreached',
      expr: 'sum by (job, instance, customer_id, customer) (ncentral_customer_patch_sla_breached_devices{%(selector)s}) > 0' % c,
      'for': c.slaBreachedFor,
      labels: { severity: 'warning' },
      annotations: {
        summary: '{{ $value }} devices of customer {{ $labels.customer }} are past the patch SLA',
        description: oneLine(|||
          {{ $value }} devices of customer "{{ $labels.customer }}" (id {{ $labels.customer_id }}) on
          {{ $labels.instance }} have had their patch service in a state other than normal for longer than
          the SLA (patch_status.sla). Fix them in N-central (Patch Status).
        |||),
      },
    },
  ],

  prometheusAlerts+:: {
    groups+: [{
      name: c.groupName,
      rules: [
        alert { annotations+: { runbook_url: c.runbookURLPattern % std.asciiLower(alert.alert) } }
        for alert in alerts
      ],
    }],
  },
}
