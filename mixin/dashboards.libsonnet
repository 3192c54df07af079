// The Grafana dashboards. A panel is one object in its row's list: kind, title and size, then its
// description, queries and what differs from its kind's defaults (lib/dashboard.libsonnet). Ids, grid
// positions, refIds and the data source are filled in. Queries select with the label matchers in `m`, so
// each carries the configured selector and the dashboard's variables.
local d = import 'lib/dashboard.libsonnet';

{
  local c = $._config,

  // Label matchers for the queries: the exporter's series narrowed by the variables that apply.
  local m = {
    exporter: '%s, job=~"$job", instance=~"$instance"' % c.selector,
    report: self.exporter + ', report=~"$report"',
    deviceClass: self.report + ', device_class=~"$device_class"',
    customer: self.exporter + ', customer=~"$customer"',
  },

  // The alerts' thresholds, drawn in: the backlog's, and the customer share's (orange from half of it).
  local backlogSteps = d.thresholds([['green', null], ['orange', c.noApprovalBacklogThreshold]]),
  local behindSteps = d.thresholds([
    ['green', null],
    ['orange', c.customerBehindThreshold / 2],
    ['red', c.customerBehindThreshold],
  ]),
  // Patch compliance: red below the alert's threshold.
  local complianceSteps = d.thresholds([['red', null], ['green', c.complianceThreshold]]),
  // Per customer from the patch status scan: normal devices, devices with a patch service, their ratio (0,
  // not missing, for a customer without a single normal device).
  local patch = {
    normal: 'sum by (customer_id, customer) (ncentral_customer_patch_status_devices{%(customer)s, state="normal"})' % m,
    monitored: 'sum by (customer_id, customer) (ncentral_customer_patch_status_devices{%(customer)s, state!="not_monitored"})' % m,
    compliance: '(\n%s\nor\n0 * %s\n)\n/\n%s' % [self.normal, self.monitored, self.monitored],
  },
  // A bar per customer: the 20 with the most devices of `expr`.
  local topCustomers(title, description, expr, steps) = d.bargauge(title, w=12, h=9) {
    description: description,
    targets: [d.target('topk(20,\nsum by (customer_id, customer) (%s)\n)' % expr, legend='{{customer}} ({{customer_id}})', instant=true)],
    fieldConfig+: { defaults+: { unit: 'short', decimals: 0, min: 0, thresholds: steps } },
  },

  // The stale-agent share's colours: orange from half the alert's threshold, red from it.
  local staleSteps = d.thresholds([
    ['green', null],
    ['orange', c.staleShareThreshold / 2],
    ['red', c.staleShareThreshold],
  ]),

  // Per customer: devices, stale devices and their share, devices on an end-of-life OS and their share.
  // A customer without end-of-life devices has no such series: `or ... * 0` shows its 0.
  local perCustomer = 'sum by (customer_id, customer) (%s)',
  local devicesOf = perCustomer % 'ncentral_customer_devices{%(customer)s}' % m,
  local staleOf = perCustomer % 'ncentral_customer_stale_devices{%(customer)s}' % m,
  local endOfLifeOf = (perCustomer % 'ncentral_customer_os_devices{%(customer)s, end_of_life="true"}' % m)
                      + '\nor\n' + (perCustomer % 'ncentral_customer_os_devices{%(customer)s}' % m) + ' * 0',
  local shareColumn(name, steps) = {
    matcher: { id: 'byName', options: name },
    properties: [
      { id: 'unit', value: 'percentunit' },
      { id: 'decimals', value: 1 },
      { id: 'min', value: 0 },
      { id: 'max', value: 1 },
      { id: 'thresholds', value: steps },
      { id: 'custom.cellOptions', value: { type: 'color-background', mode: 'basic' } },
    ],
  },

  // A stat of the patches with one approval status, per report.
  local approvalStat(title, status, color) = d.stat(title, w=4, h=5) {
    description: 'Patch approvals with status "%s" in the selected device classes, per report (sum of ncentral_patch_approvals). One value per report: reports with different filters count different patches.' % std.strReplace(status, '_', ' '),
    targets: [d.target('sum by (report) (ncentral_patch_approvals{%s, approval_status="%s"})' % [m.deviceClass, status], legend='{{report}}')],
    fieldConfig+: {
      defaults+: {
        unit: 'short',
        color: { mode: 'fixed', fixedColor: color },
        thresholds: d.thresholds([['green', null]]),
        decimals: 0,
      },
    },
    options+: { textMode: 'auto', colorMode: 'value', graphMode: 'area' },
  },

  local variables = [
    d.variable('job', 'Job', 'label_values(ncentral_patch_exporter_build_info{%s}, job)' % c.selector),
    d.variable('instance', 'Instance', 'label_values(ncentral_patch_exporter_build_info{%s, job=~"$job"}, instance)' % c.selector),
    d.variable('report', 'Report', 'label_values(ncentral_patch_report_last_run_success{%(exporter)s}, report)' % m),
    d.variable('device_class', 'Device class', 'label_values(ncentral_patch_approvals{%(report)s}, device_class)' % m),
    // 500 customers would make a 500-name regex (and Grafana does not escape `"` in one): "All" is `.*`.
    d.variable('customer', 'Customer', 'label_values(ncentral_customer_devices{%(exporter)s}, customer)' % m, allValue='.*'),
  ],

  local rows = [
    d.row('Approval status', [
      approvalStat('Approved for install', 'approved_for_install', 'green'),
      approvalStat('No approval', 'no_approval', 'orange'),
      approvalStat('Not approved', 'not_approved', 'blue'),
      approvalStat('Declined', 'declined', 'purple'),
      approvalStat('Approved for removal', 'approved_for_removal', 'text'),
      d.gauge('Share approved for install', w=4, h=5) {
        description: 'Share of patch approvals in the selected device classes that are approved for install, per report: approved_for_install divided by all approval statuses.',
        targets: [d.target('sum by (report) (ncentral_patch_approvals{%(deviceClass)s, approval_status="approved_for_install"})\n/\nsum by (report) (ncentral_patch_approvals{%(deviceClass)s})' % m, legend='{{report}}', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'percentunit',
            min: 0,
            max: 1,
            decimals: 1,
            thresholds: d.thresholds([['red', null], ['orange', 0.8], ['green', 0.95]]),
          },
        },
      },
    ]),
    d.row('Approval status per device class', [
      d.barchart('Approval status per device class', w=12, h=9) {
        description: "Patch approvals per device class, stacked by approval status and shown as the share of each device class's patches (hover for the counts). Sums the selected reports.",
        targets: [d.target('sum by (device_class, approval_status) (ncentral_patch_approvals{%(deviceClass)s})' % m, legend='{{device_class}} {{approval_status}}', instant=true, format='table')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: {
            fillOpacity: 80,
            lineWidth: 1,
            gradientMode: 'none',
            axisPlacement: 'auto',
            axisSoftMin: 0,
          },
          },
          overrides: [
            {
              matcher: { id: 'byName', options: 'Approved for install' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }],
            },
            {
              matcher: { id: 'byName', options: 'No approval' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'orange' } }],
            },
            {
              matcher: { id: 'byName', options: 'Not approved' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }],
            },
            {
              matcher: { id: 'byName', options: 'Declined' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'purple' } }],
            },
            {
              matcher: { id: 'byName', options: 'Approved for removal' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'text' } }],
            },
          ],
        },
        options+: { stacking: 'percent', showValue: 'never' },
        transformations: [
          {
            id: 'groupingToMatrix',
            options: {
              rowField: 'device_class',
              columnField: 'approval_status',
              valueField: 'Value',
              emptyValue: 'null',
            },
          },
          {
            id: 'organize',
            options: {
              excludeByName: {},
              indexByName: {
                'device_class\\approval_status': 0,
                approved_for_install: 1,
                no_approval: 2,
                not_approved: 3,
                declined: 4,
                approved_for_removal: 5,
              },
              renameByName: {
                'device_class\\approval_status': 'Device class',
                approved_for_install: 'Approved for install',
                no_approval: 'No approval',
                not_approved: 'Not approved',
                declined: 'Declined',
                approved_for_removal: 'Approved for removal',
              },
            },
          },
        ],
      },
      d.table('Approval status per device class (table)', w=12, h=9) {
        description: 'Patch approvals per device class and approval status, with the total and the share approved for install. Sums the selected reports.',
        targets: [d.target('sum by (device_class, approval_status) (ncentral_patch_approvals{%(deviceClass)s})' % m, legend='{{device_class}} {{approval_status}}', instant=true, format='table')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: { align: 'auto', cellOptions: { type: 'auto' } },
          },
          overrides: [
            {
              matcher: { id: 'byName', options: 'Approved share' },
              properties: [
                { id: 'unit', value: 'percentunit' },
                { id: 'decimals', value: 1 },
                {
                  id: 'thresholds',
                  value: {
                    mode: 'absolute',
                    steps: [
                      { color: 'red', value: null },
                      { color: 'orange', value: 0.8 },
                      { color: 'green', value: 0.95 },
                    ],
                  },
                },
                { id: 'custom.cellOptions', value: { type: 'color-text' } },
              ],
            },
            {
              matcher: { id: 'byName', options: 'No approval' },
              properties: [
                {
                  id: 'thresholds',
                  value: backlogSteps,
                },
                { id: 'custom.cellOptions', value: { type: 'color-text' } },
              ],
            },
          ],
        },
        transformations: [
          {
            id: 'groupingToMatrix',
            options: {
              rowField: 'device_class',
              columnField: 'approval_status',
              valueField: 'Value',
              emptyValue: 'null',
            },
          },
          {
            id: 'organize',
            options: {
              excludeByName: {},
              indexByName: {
                'device_class\\approval_status': 0,
                approved_for_install: 1,
                no_approval: 2,
                not_approved: 3,
                declined: 4,
                approved_for_removal: 5,
              },
              renameByName: {
                'device_class\\approval_status': 'Device class',
                approved_for_install: 'Approved for install',
                no_approval: 'No approval',
                not_approved: 'Not approved',
                declined: 'Declined',
                approved_for_removal: 'Approved for removal',
              },
            },
          },
          {
            id: 'calculateField',
            options: { mode: 'reduceRow', reduce: { reducer: 'sum' }, alias: 'Total', replaceFields: false },
          },
          {
            id: 'calculateField',
            options: {
              mode: 'binary',
              binary: { left: 'Approved for install', operator: '/', right: 'Total' },
              alias: 'Approved share',
              replaceFields: false,
            },
          },
          { id: 'sortBy', options: { sort: [{ field: 'Total', desc: true }] } },
        ],
      },
    ]),
    d.row('No approval backlog', [
      d.timeseries('Patches waiting for an approval decision', w=16, h=9) {
        description: 'Patches with status "no approval" per device class and report over time: the approval backlog. The dashed line is the threshold of the NCentralPatchNoApprovalBacklog alert (%s per device class). Values change when a report run completes.' % c.noApprovalBacklogThreshold,
        targets: [d.target('sum by (report, device_class) (ncentral_patch_approvals{%(deviceClass)s, approval_status="no_approval"})' % m, legend='{{device_class}} ({{report}})')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            thresholds: backlogSteps,
            custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: 10,
            showPoints: 'never',
            lineInterpolation: 'stepAfter',
            spanNulls: false,
            stacking: { mode: 'none', group: 'A' },
            axisPlacement: 'auto',
            thresholdsStyle: { mode: 'dashed' },
          },
            min: 0,
            decimals: 0,
          },
        },
        options+: {
          legend: {
            showLegend: true,
            displayMode: 'table',
            placement: 'right',
            calcs: ['lastNotNull', 'max'],
          },
        },
      },
      d.stat('Backlog change in time range', w=8, h=9) {
        description: "Change of the \"no approval\" backlog over the dashboard's time range, per report (delta of the summed gauge, so approximate). Positive: decisions fall behind.",
        targets: [d.target('sum by (report) (delta(ncentral_patch_approvals{%(deviceClass)s, approval_status="no_approval"}[$__range]))' % m, legend='{{report}}', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null], ['orange', 1]]),
            decimals: 0,
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'none' },
      },
    ]),
    d.row('Install outcomes', [
      d.stat('Failed installs', w=6, h=4) {
        description: 'Patch installs with status "failed" per report (all patch types and approval statuses; 0 when the report lists none).',
        targets: [d.target('sum by (report) (ncentral_patch_installs{%(report)s, install_status="failed"})\nor\n0 * sum by (report) (ncentral_patch_installs{%(report)s})' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'fixed', fixedColor: 'red' },
            thresholds: d.thresholds([['green', null]]),
            decimals: 0,
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'area' },
      },
      d.stat('Installed with errors', w=6, h=4) {
        description: 'Patch installs with status "installed with errors" per report (all patch types and approval statuses; 0 when the report lists none).',
        targets: [d.target('sum by (report) (ncentral_patch_installs{%(report)s, install_status="installed_with_errors"})\nor\n0 * sum by (report) (ncentral_patch_installs{%(report)s})' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'fixed', fixedColor: 'orange' },
            thresholds: d.thresholds([['green', null]]),
            decimals: 0,
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'area' },
      },
      d.stat('Aborted installs', w=6, h=4) {
        description: 'Patch installs with status "aborted" per report (all patch types and approval statuses; 0 when the report lists none).',
        targets: [d.target('sum by (report) (ncentral_patch_installs{%(report)s, install_status="aborted"})\nor\n0 * sum by (report) (ncentral_patch_installs{%(report)s})' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'fixed', fixedColor: 'yellow' },
            thresholds: d.thresholds([['green', null]]),
            decimals: 0,
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'area' },
      },
      d.stat('Install success', w=6, h=4) {
        description: 'Installed without errors as a share of finished installs (installed, installed with errors, failed, aborted), per report.',
        targets: [d.target('sum by (report) (ncentral_patch_installs{%(report)s, install_status="installed"})\n/\nsum by (report) (ncentral_patch_installs{%(report)s, install_status=~"installed|installed_with_errors|failed|aborted"})' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'percentunit',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['red', null], ['orange', 0.9], ['green', 0.98]]),
            decimals: 1,
            min: 0,
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'area' },
      },
      d.barchart('Problem installs by patch type', w=10, h=9) {
        description: 'Failed, installed-with-errors and aborted patch installs per patch type (all approval statuses, selected reports summed).',
        targets: [d.target('sum by (patch_type, install_status) (ncentral_patch_installs{%(report)s, install_status=~"failed|installed_with_errors|aborted"})' % m, legend='{{patch_type}} {{install_status}}', instant=true, format='table')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            min: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: { fillOpacity: 80, lineWidth: 1, gradientMode: 'none', axisPlacement: 'auto' },
          },
          overrides: [
            {
              matcher: { id: 'byName', options: 'Failed' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'red' } }],
            },
            {
              matcher: { id: 'byName', options: 'Installed with errors' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'orange' } }],
            },
            {
              matcher: { id: 'byName', options: 'Aborted' },
              properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'yellow' } }],
            },
          ],
        },
        options+: { stacking: 'normal', showValue: 'auto' },
        transformations: [
          {
            id: 'groupingToMatrix',
            options: {
              rowField: 'patch_type',
              columnField: 'install_status',
              valueField: 'Value',
              emptyValue: 'null',
            },
          },
          {
            id: 'organize',
            options: {
              excludeByName: {},
              indexByName: { 'patch_type\\install_status': 0, failed: 1, installed_with_errors: 2, aborted: 3 },
              renameByName: {
                'patch_type\\install_status': 'Patch type',
                failed: 'Failed',
                installed_with_errors: 'Installed with errors',
                aborted: 'Aborted',
              },
            },
          },
        ],
      },
      d.timeseries('Problem installs over time', w=14, h=9) {
        description: 'Failed, installed-with-errors and aborted patch installs per patch type over time (all approval statuses, selected reports summed). Values change when a report run completes.',
        targets: [d.target('sum by (patch_type, install_status) (ncentral_patch_installs{%(report)s, install_status=~"failed|installed_with_errors|aborted"})' % m, legend='{{patch_type}}: {{install_status}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            thresholds: d.thresholds([['green', null]]),
            custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: 10,
            showPoints: 'never',
            lineInterpolation: 'stepAfter',
            spanNulls: false,
            stacking: { mode: 'none', group: 'A' },
            axisPlacement: 'auto',
            thresholdsStyle: { mode: 'off' },
          },
            min: 0,
            decimals: 0,
          },
        },
        options+: {
          legend: {
            showLegend: true,
            displayMode: 'table',
            placement: 'right',
            calcs: ['lastNotNull', 'max'],
          },
        },
      },
    ]),
    d.row('Exporter health', [
      d.stat('Exporter up', w=4, h=5) {
        description: 'Whether Prometheus can scrape the exporter (up). DOWN fires NCentralPatchExporterDown after %s.' % c.exporterDownFor,
        targets: [d.target('up{%(exporter)s}' % m, legend='{{instance}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['red', null], ['green', 1]]),
            mappings: [
            {
              type: 'value',
              options: {
                '0': { text: 'DOWN', color: 'red', index: 0 },
                '1': { text: 'UP', color: 'green', index: 1 },
              },
            },
          ],
          },
        },
        options+: { textMode: 'auto', colorMode: 'background', graphMode: 'none' },
      },
      d.stat('Last run', w=4, h=5) {
        description: "Result of each report's last run (ncentral_patch_report_last_run_success). After a failure the exporter keeps serving the last good data.",
        targets: [d.target('ncentral_patch_report_last_run_success{%(report)s}' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['red', null], ['green', 1]]),
            mappings: [
            {
              type: 'value',
              options: {
                '0': { text: 'FAILED', color: 'red', index: 0 },
                '1': { text: 'OK', color: 'green', index: 1 },
              },
            },
          ],
          },
        },
        options+: { textMode: 'auto', colorMode: 'background', graphMode: 'none' },
      },
      d.stat('Data age', w=4, h=5) {
        description: "Time since each report's last successful run. Orange after 1.25 report intervals, red after two (default interval 1h; NCentralPatchDataStale fires then). Empty until a report has succeeded once.",
        targets: [d.target('time() - ncentral_patch_report_last_success_timestamp_seconds{%(report)s}' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 's',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null], ['orange', 4500], ['red', 7200]]),
            decimals: 0,
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'none' },
      },
      d.stat('Report generation time', w=4, h=5) {
        description: "How long each report's last run took: submitting the report, N-central generating it, and fetching the result (ncentral_patch_report_last_duration_seconds).",
        targets: [d.target('ncentral_patch_report_last_duration_seconds{%(report)s}' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 's',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null]]),
          },
        },
        options+: { textMode: 'auto', colorMode: 'value', graphMode: 'area' },
      },
      d.stat('Config reload', w=4, h=5) {
        description: "Whether the exporter's last configuration (re)load succeeded. A failed reload keeps the previous configuration running.",
        targets: [d.target('ncentral_patch_exporter_config_last_reload_successful{%(exporter)s}' % m, legend='{{instance}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['red', null], ['green', 1]]),
            mappings: [
            {
              type: 'value',
              options: {
                '0': { text: 'FAILED', color: 'red', index: 0 },
                '1': { text: 'OK', color: 'green', index: 1 },
              },
            },
          ],
          },
        },
        options+: { textMode: 'auto', colorMode: 'background', graphMode: 'none' },
      },
      d.stat('Exporter version', w=4, h=5) {
        description: 'Version of the running exporter (ncentral_patch_exporter_build_info).',
        targets: [d.target('ncentral_patch_exporter_build_info{%(exporter)s}' % m, legend='{{version}}', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            color: { mode: 'fixed', fixedColor: 'text' },
            thresholds: d.thresholds([['green', null]]),
          },
        },
        options+: { textMode: 'name', colorMode: 'value', graphMode: 'none' },
      },
      d.timeseries('Report generation time (history)', w=8, h=8) {
        description: "Duration of each report's last run over time. Steady growth means N-central takes longer to build the report; compare with the report's timeout.",
        targets: [d.target('ncentral_patch_report_last_duration_seconds{%(report)s}' % m, legend='{{report}}')],
        fieldConfig+: {
          defaults+: {
            unit: 's',
            thresholds: d.thresholds([['green', null]]),
            custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: 10,
            showPoints: 'never',
            lineInterpolation: 'stepAfter',
            spanNulls: false,
            stacking: { mode: 'none', group: 'A' },
            axisPlacement: 'auto',
            thresholdsStyle: { mode: 'off' },
          },
            min: 0,
          },
        },
        options+: {
          legend: {
            showLegend: true,
            displayMode: 'table',
            placement: 'right',
            calcs: ['lastNotNull', 'max'],
          },
        },
      },
      d.timeseries('Failures by reason', w=8, h=8) {
        description: "Failed report runs per reason (increase of ncentral_patch_report_failures_total), selected reports summed. connection/http/timeout point at N-central or the network, auth/forbidden at the API token, report_failed at N-central's report itself.",
        targets: [d.target('sum by (reason) (increase(ncentral_patch_report_failures_total{%(report)s}[$__rate_interval]))' % m, legend='{{reason}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            thresholds: d.thresholds([['green', null]]),
            custom: {
            drawStyle: 'bars',
            lineWidth: 1,
            fillOpacity: 70,
            showPoints: 'never',
            lineInterpolation: 'stepAfter',
            spanNulls: false,
            stacking: { mode: 'normal', group: 'A' },
            axisPlacement: 'auto',
            thresholdsStyle: { mode: 'off' },
          },
            min: 0,
            decimals: 0,
          },
        },
        options+: {
          legend: {
            showLegend: true,
            displayMode: 'table',
            placement: 'right',
            calcs: ['lastNotNull', 'max'],
          },
        },
      },
      d.bargauge('Failures in time range', w=8, h=8) {
        description: "Failed report runs per report and reason over the dashboard's time range.",
        targets: [d.target('sum by (report, reason) (increase(ncentral_patch_report_failures_total{%(report)s}[$__range]))' % m, legend='{{report}}: {{reason}}', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            min: 0,
            thresholds: d.thresholds([['green', null], ['red', 1]]),
          },
        },
      },
    ]),
    d.row('Customers', [
      d.stat('Devices (customers)', w=6, h=5) {
        description: "Devices N-central manages in the selected customers, from the exporter's customer scan (GET /api/devices).",
        targets: [d.target('sum(ncentral_customer_devices{%(customer)s})' % m, legend='devices', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            color: { mode: 'fixed', fixedColor: 'blue' },
            thresholds: d.thresholds([['blue', null]]),
          },
        },
        options+: { colorMode: 'value', graphMode: 'none', textMode: 'auto' },
      },
      d.stat('Devices with a patch problem', w=6, h=5) {
        description: 'Devices of the selected customers with at least one active issue on a patch service (failed, warning, stale...); a device with several such issues counts once.',
        targets: [d.target('sum(ncentral_customer_patch_issue_devices{%(customer)s})' % m, legend='devices with a patch problem', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null], ['orange', 1]]),
          },
        },
        options+: { colorMode: 'value', graphMode: 'none', textMode: 'auto' },
      },
      d.gauge('Share of devices with a patch problem', w=6, h=5) {
        description: 'Devices with a patch problem divided by all devices, over the selected customers.',
        targets: [d.target('sum(ncentral_customer_patch_issue_devices{%(customer)s})\n/\nsum(ncentral_customer_devices{%(customer)s})' % m, legend='share', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'percentunit',
            min: 0,
            max: 1,
            decimals: 1,
            thresholds: behindSteps,
          },
        },
      },
      d.stat('Customers refused in time range', w=6, h=5) {
        description: 'Customers whose active issues N-central refused (403, 404) during scans in the time range, by reason; they keep their last counts.',
        targets: [d.target('sum by (reason) (increase(ncentral_customer_scan_errors_total{%(exporter)s}[$__range]))' % m, legend='{{reason}}', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            min: 0,
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null], ['orange', 1]]),
          },
        },
        options+: { colorMode: 'value', graphMode: 'none', textMode: 'value_and_name' },
      },
      d.table('Customers', w=14, h=12) {
        description: 'Per customer: devices, devices with at least one active issue on a patch service, and their share. Sorted by share; click a column header to sort by it.',
        targets: [
          d.target('sum by (customer_id, customer) (ncentral_customer_devices{%(customer)s})' % m, instant=true, format='table'),
          d.target('sum by (customer_id, customer) (ncentral_customer_patch_issue_devices{%(customer)s})' % m, instant=true, format='table'),
          d.target('sum by (customer_id, customer) (ncentral_customer_patch_issue_devices{%(customer)s})\n/\nsum by (customer_id, customer) (ncentral_customer_devices{%(customer)s})' % m, instant=true, format='table'),
        ],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
          },
          overrides: [
            {
              matcher: { id: 'byName', options: 'Share' },
              properties: [
                { id: 'unit', value: 'percentunit' },
                { id: 'decimals', value: 1 },
                { id: 'min', value: 0 },
                { id: 'max', value: 1 },
                {
                  id: 'thresholds',
                  value: behindSteps,
                },
                { id: 'custom.cellOptions', value: { type: 'color-background', mode: 'basic' } },
              ],
            },
          ],
        },
        options+: { sortBy: [{ displayName: 'Share', desc: true }] },
        transformations: [
          { id: 'merge', options: {} },
          {
            id: 'organize',
            options: {
              excludeByName: { Time: true },
              indexByName: { customer: 0, customer_id: 1, 'Value #A': 2, 'Value #B': 3, 'Value #C': 4 },
              renameByName: {
                customer: 'Customer',
                customer_id: 'Customer id',
                'Value #A': 'Devices',
                'Value #B': 'With a patch problem',
                'Value #C': 'Share',
              },
            },
          },
          { id: 'sortBy', options: { sort: [{ field: 'Share', desc: true }] } },
        ],
      },
      d.bargauge('Top 10 customers by share of devices with a patch problem', w=10, h=12) {
        description: 'The 10 selected customers with the largest share of devices with an active issue on a patch service.',
        targets: [d.target('topk(10,\nsum by (customer_id, customer) (ncentral_customer_patch_issue_devices{%(customer)s})\n/\nsum by (customer_id, customer) (ncentral_customer_devices{%(customer)s})\n)' % m, legend='{{customer}} ({{customer_id}})', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'percentunit',
            decimals: 1,
            min: 0,
            max: 1,
            thresholds: behindSteps,
          },
        },
      },
      d.timeseries('Share of devices with a patch problem over time (top 10)', w=24, h=8) {
        description: 'The share per customer over time, for the 10 customers with the largest share at each point.',
        targets: [d.target('topk(10,\nsum by (customer_id, customer) (ncentral_customer_patch_issue_devices{%(customer)s})\n/\nsum by (customer_id, customer) (ncentral_customer_devices{%(customer)s})\n)' % m, legend='{{customer}} ({{customer_id}})')],
        fieldConfig+: {
          defaults+: {
            unit: 'percentunit',
            decimals: 1,
            min: 0,
            custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 0, showPoints: 'never', spanNulls: true },
            thresholds: d.thresholds([['green', null]]),
          },
        },
        options+: {
          legend: { displayMode: 'table', placement: 'right', showLegend: true, calcs: ['lastNotNull'] },
        },
      },
      d.stat('Stale devices', w=6, h=5) {
        description: 'Devices of the selected customers whose agent last checked in longer ago than customers.stale_after (7d by default) before the scan, or never: their patch status is as old as their last check-in.',
        targets: [d.target('sum(ncentral_customer_stale_devices{%(customer)s})' % m, legend='stale devices', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null], ['orange', 1]]),
          },
        },
        options+: { colorMode: 'value', graphMode: 'none', textMode: 'auto' },
      },
      d.gauge('Share of stale devices', w=6, h=5) {
        description: 'Stale devices divided by all devices, over the selected customers.',
        targets: [d.target('sum(ncentral_customer_stale_devices{%(customer)s})\n/\nsum(ncentral_customer_devices{%(customer)s})' % m, legend='share', instant=true)],
        fieldConfig+: {
          defaults+: { unit: 'percentunit', min: 0, max: 1, decimals: 1, thresholds: staleSteps },
        },
      },
      d.stat('Devices on an end-of-life OS', w=6, h=5) {
        description: 'Devices of the selected customers on an operating system its vendor no longer patches (customers.end_of_life_os): only an upgrade fixes them.',
        targets: [d.target('sum(ncentral_customer_os_devices{%(customer)s, end_of_life="true"})\nor\nsum(ncentral_customer_os_devices{%(customer)s}) * 0' % m, legend='end-of-life devices', instant=true)],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            color: { mode: 'thresholds' },
            thresholds: d.thresholds([['green', null], ['orange', 1]]),
          },
        },
        options+: { colorMode: 'value', graphMode: 'none', textMode: 'auto' },
      },
      d.gauge('Share on an end-of-life OS', w=6, h=5) {
        description: 'Devices on an end-of-life operating system divided by all devices, over the selected customers.',
        targets: [d.target('(\nsum(ncentral_customer_os_devices{%(customer)s, end_of_life="true"})\nor\nsum(ncentral_customer_os_devices{%(customer)s}) * 0\n)\n/\nsum(ncentral_customer_os_devices{%(customer)s})' % m, legend='share', instant=true)],
        fieldConfig+: {
          defaults+: { unit: 'percentunit', min: 0, max: 1, decimals: 1, thresholds: d.thresholds([['green', null], ['orange', 0.01]]) },
        },
      },
      d.table('Stale and end-of-life devices per customer', w=14, h=12) {
        description: 'Per customer: devices, stale devices (agent silent longer than customers.stale_after, or never) and their share, devices on an end-of-life operating system and their share. Sorted by the stale share; click a column header to sort by another.',
        targets: [
          d.target(devicesOf, instant=true, format='table'),
          d.target(staleOf, instant=true, format='table'),
          d.target(staleOf + '\n/\n' + devicesOf, instant=true, format='table'),
          d.target(endOfLifeOf, instant=true, format='table'),
          d.target('(\n' + endOfLifeOf + '\n)\n/\n' + devicesOf, instant=true, format='table'),
        ],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
          },
          overrides: [
            shareColumn('Stale share', staleSteps),
            shareColumn('End-of-life share', d.thresholds([['green', null], ['orange', 0.01]])),
          ],
        },
        options+: { sortBy: [{ displayName: 'Stale share', desc: true }] },
        transformations: [
          { id: 'merge', options: {} },
          {
            id: 'organize',
            options: {
              excludeByName: { Time: true },
              indexByName: {
                customer: 0, customer_id: 1, 'Value #A': 2, 'Value #B': 3, 'Value #C': 4, 'Value #D': 5, 'Value #E': 6,
              },
              renameByName: {
                customer: 'Customer',
                customer_id: 'Customer id',
                'Value #A': 'Devices',
                'Value #B': 'Stale',
                'Value #C': 'Stale share',
                'Value #D': 'End-of-life OS',
                'Value #E': 'End-of-life share',
              },
            },
          },
          { id: 'sortBy', options: { sort: [{ field: 'Stale share', desc: true }] } },
        ],
      },
      d.table('Operating systems', w=10, h=12) {
        description: "Devices per operating system (N-central's supportedOs) across the selected customers, and whether its vendor's support has ended (customers.end_of_life_os). Sorted by devices.",
        targets: [d.target('sum by (os, end_of_life) (ncentral_customer_os_devices{%(customer)s})' % m, instant=true, format='table')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
          },
          overrides: [{
            matcher: { id: 'byName', options: 'End-of-life' },
            properties: [
              { id: 'mappings', value: [{ type: 'value', options: { 'true': { text: 'yes', color: 'orange', index: 0 }, 'false': { text: 'no', color: 'green', index: 1 } } }] },
              { id: 'custom.cellOptions', value: { type: 'color-text' } },
            ],
          }],
        },
        options+: { sortBy: [{ displayName: 'Devices', desc: true }] },
        transformations: [
          {
            id: 'organize',
            options: {
              excludeByName: { Time: true },
              indexByName: { os: 0, end_of_life: 1, Value: 2 },
              renameByName: { os: 'Operating system', end_of_life: 'End-of-life', Value: 'Devices' },
            },
          },
          { id: 'sortBy', options: { sort: [{ field: 'Devices', desc: true }] } },
        ],
      },
    ]),
    d.row('Patch compliance', [
      d.gauge('Patch compliance (estate)', w=6, h=10) {
        description: 'Devices whose patch service is normal divided by all devices with a patch service (devices not monitored for patching left out), over the selected customers; from the patch status scan.',
        targets: [d.target('sum(ncentral_customer_patch_status_devices{%(customer)s, state="normal"})\n/\nsum(ncentral_customer_patch_status_devices{%(customer)s, state!="not_monitored"})' % m, legend='compliance', instant=true)],
        fieldConfig+: { defaults+: { unit: 'percentunit', min: 0, max: 1, decimals: 1, thresholds: complianceSteps } },
      },
      d.table('Patch compliance per customer', w=18, h=10) {
        description: 'Per customer: the share of its devices with a patch service whose patch service is normal (normal / (all - not monitored)), worst first; the devices behind it, those not monitored for patching and those past the SLA.',
        targets: [
          d.target(patch.compliance, instant=true, format='table'),
          d.target(patch.normal, instant=true, format='table'),
          d.target(patch.monitored, instant=true, format='table'),
          d.target('sum by (customer_id, customer) (ncentral_customer_patch_status_devices{%(customer)s, state="not_monitored"})' % m, instant=true, format='table'),
          d.target('sum by (customer_id, customer) (ncentral_customer_patch_sla_breached_devices{%(customer)s})' % m, instant=true, format='table'),
        ],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            thresholds: d.thresholds([['green', null]]),
            custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
          },
          overrides: [{
            matcher: { id: 'byName', options: 'Compliance' },
            properties: [
              { id: 'unit', value: 'percentunit' },
              { id: 'decimals', value: 1 },
              { id: 'min', value: 0 },
              { id: 'max', value: 1 },
              { id: 'thresholds', value: complianceSteps },
              { id: 'custom.cellOptions', value: { type: 'color-background', mode: 'basic' } },
            ],
          }],
        },
        options+: { sortBy: [{ displayName: 'Compliance', desc: false }] },
        transformations: [
          { id: 'merge', options: {} },
          {
            id: 'organize',
            options: {
              excludeByName: { Time: true },
              indexByName: { customer: 0, customer_id: 1, 'Value #A': 2, 'Value #B': 3, 'Value #C': 4, 'Value #D': 5, 'Value #E': 6 },
              renameByName: {
                customer: 'Customer',
                customer_id: 'Customer id',
                'Value #A': 'Compliance',
                'Value #B': 'Normal',
                'Value #C': 'With a patch service',
                'Value #D': 'Not monitored',
                'Value #E': 'Past the SLA',
              },
            },
          },
          { id: 'sortBy', options: { sort: [{ field: 'Compliance', desc: false }] } },
        ],
      },
      topCustomers(
        'Devices not monitored for patching per customer',
        'Per customer (the 20 with the most), devices without a patch service (patch management never enabled): outside the compliance ratio, and unpatched as far as anyone knows.',
        'ncentral_customer_patch_status_devices{%(customer)s, state="not_monitored"}' % m,
        d.thresholds([['blue', null]]),
      ),
      topCustomers(
        'Devices past the patch SLA per customer',
        'Per customer (the 20 with the most), devices whose patch service has been in a state other than normal for longer than patch_status.sla (from its transitionTime).',
        'ncentral_customer_patch_sla_breached_devices{%(customer)s}' % m,
        d.thresholds([['green', null], ['red', 1]]),
      ),
      d.timeseries('Devices per patch state over time', w=24, h=8) {
        description: 'Devices of the selected customers per state of their patch service (not_monitored: none), as of each patch status scan.',
        targets: [d.target('sum by (state) (ncentral_customer_patch_status_devices{%(customer)s})' % m, legend='{{state}}')],
        fieldConfig+: {
          defaults+: {
            unit: 'short',
            decimals: 0,
            min: 0,
            custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 60, showPoints: 'never', spanNulls: true, stacking: { mode: 'normal', group: 'A' } },
            thresholds: d.thresholds([['green', null]]),
          },
        },
        options+: {
          legend: { displayMode: 'table', placement: 'right', showLegend: true, calcs: ['lastNotNull'] },
        },
      },
    ]),
  ],

  grafanaDashboards+:: {
    'ncentral-patch-overview.json': d.dashboard(
      uid='ncentral-patch-overview',
      title='N-central patch overview',
      description='Patch approval status, approval backlog, install outcomes, per-customer patch health, patch compliance and exporter health from ncentral-patch-exporter.',
      tags=['ncentral', 'n-able', 'patching', 'prometheus'],
      variables=variables,
      rows=rows,
    ),
  },
}
