// The monitoring mixin of ncentral-patch-exporter: prometheusAlerts, prometheusRules and
// grafanaDashboards, built from _config (config.libsonnet). The shipped prometheus/alerts.yml,
// deploy/kubernetes/prometheusrule.yaml and grafana/dashboards/*.json are its output with the default
// _config: `python -m mixin.build` writes them.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet') +
{
  // No recording rules: every alert and panel reads the exporter's series directly.
  prometheusRules+:: { groups+: [] },
}
