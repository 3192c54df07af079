// What a user tunes: the selector that finds the exporter's series, and every threshold and wait the
// alerts and dashboards use. Override in your own jsonnet:
//   (import 'mixin/mixin.libsonnet') + { _config+:: { selector: 'job="ncentral"' } }
{
  _config+:: {
    // Label matchers that select the exporter's series, in every alert and dashboard query. Any matchers
    // Prometheus accepts, e.g. 'job="ncentral"' or 'namespace="monitoring", job=~"ncentral.*"'.
    selector: 'job="ncentral-patch-exporter"',

    // The one rule group's name in the Prometheus rule file and the PrometheusRule.
    groupName: 'ncentral-patch-exporter',

    // Where each alert's runbook is: the README section named after the alert (GitHub's anchor is the
    // heading in lower case).
    runbookURLPattern: 'https://github.com/ncentral-patch-exporter/ncentral-patch-exporter/blob/main/README.md#%s',

    // NCentralPatchExporterDown: how long Prometheus may fail to scrape before it fires.
    exporterDownFor: '5m',

    // NCentralPatchReportFailing: how long a report may keep failing. Make it at least one report
    // interval if a single failed run should not alert.
    reportFailingFor: '30m',

    // NCentralPatchDataStale: the last success is older than this many report intervals
    // (`reports[].interval`, `customers.interval`, `patch_status.interval`; each collection exports its
    // own as ncentral_patch_report_interval_seconds).
    stalenessFactor: 2,
    dataStaleFor: '10m',

    // NCentralPatchInstallFailuresPresent (informational) and NCentralPatchInstallFailuresRising: the
    // window whose lowest failed-install count a rise is measured from.
    installFailuresPresentFor: '15m',
    installFailuresRisingWindow: '6h',
    installFailuresRisingFor: '15m',

    // NCentralPatchNoApprovalBacklog: patches per device class awaiting an approval decision.
    noApprovalBacklogThreshold: 100,
    noApprovalBacklogFor: '1d',

    // NCentralPatchCustomerBehind: the share of a customer's devices with an active issue on a patch
    // service (customer scan).
    customerBehindThreshold: 0.2,
    customerBehindFor: '1d',

    // Per-customer patch compliance (fully patched devices / monitored devices) below which a customer
    // is behind, and the share of a customer's devices whose agents stopped checking in above which they
    // are stale: for the alerts and panels on those metrics.
    complianceThreshold: 0.9,
    complianceFor: '1d',
    // NCentralCustomerPatchSLABreached: how long a count of devices past the exporter's patch_status.sla
    // must stand (it changes only with a patch status scan).
    slaBreachedFor: '15m',
    staleShareThreshold: 0.1,
    staleShareFor: '6h',

    // NCentralEndOfLifeDevices (informational): how long devices on an end-of-life operating system
    // (customers.end_of_life_os) must be seen before it fires; a scan's count stands until the next scan.
    endOfLifeFor: '1h',
  },
}
