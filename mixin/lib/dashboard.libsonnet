// Plain Grafana dashboard JSON from small panel objects. The helpers add what every panel has (the data
// source, its id, the targets' refIds, the grid position), so a panel in dashboards.libsonnet says only
// what is its own: kind, title, size, description, queries, and how it differs from its kind's defaults.
local datasource = { type: 'prometheus', uid: '${datasource}' };
local width = 24;  // Grafana's grid

// A panel of `type`, `w` columns wide and `h` rows high, with the defaults of its kind.
local panel(type, title, w, h, options={}, defaults={}) = {
  type: type,
  title: title,
  gridPos: { w: w, h: h },
  fieldConfig: { defaults: { mappings: [] } + defaults, overrides: [] },
  options: options,
};

local reduce = { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false } };

// Rows top to bottom; in a row, panels left to right, a new line when the next one does not fit.
local place(state, item) =
  if item.type == 'row' then
    local y = state.y + state.lineHeight;
    state {
      x: 0,
      y: y + 1,
      lineHeight: 0,
      id: state.id + 1,
      panels+: [item { id: state.id, gridPos: { x: 0, y: y, w: width, h: 1 } }],
    }
  else
    local wraps = state.x + item.gridPos.w > width;
    local x = if wraps then 0 else state.x;
    local y = if wraps then state.y + state.lineHeight else state.y;
    state {
      x: x + item.gridPos.w,
      y: y,
      lineHeight: std.max(if wraps then 0 else state.lineHeight, item.gridPos.h),
      id: state.id + 1,
      panels+: [item {
        id: state.id,
        datasource: datasource,
        gridPos+: { x: x, y: y },
        targets: [
          item.targets[i] { datasource: datasource, refId: std.char(std.codepoint('A') + i) }
          for i in std.range(0, std.length(item.targets) - 1)
        ],
      }],
    };

{
  // A Prometheus query: a range query unless `instant`; `format` 'table' for table-shaped panels.
  target(expr, legend='', instant=false, format='time_series'):: {
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
    editorMode: 'code',
  },

  // Absolute threshold steps from [colour, from value] pairs; the first pair's value is null.
  thresholds(steps):: { mode: 'absolute', steps: [{ color: step[0], value: step[1] } for step in steps] },

  // A fixed colour, for an override's properties.
  color(name):: { id: 'color', value: { mode: 'fixed', fixedColor: name } },

  // The panel kinds, each with the options this dashboard's panels of that kind share.
  stat(title, w, h):: panel('stat', title, w, h, reduce {
    justifyMode: 'auto',
    orientation: 'auto',
    showPercentChange: false,
    wideLayout: true,
  }),
  gauge(title, w, h):: panel('gauge', title, w, h, reduce {
    orientation: 'auto',
    showThresholdLabels: false,
    showThresholdMarkers: true,
  }, { color: { mode: 'thresholds' } }),
  bargauge(title, w, h):: panel('bargauge', title, w, h, reduce {
    displayMode: 'basic',
    maxVizHeight: 300,
    minVizHeight: 10,
    minVizWidth: 0,
    namePlacement: 'auto',
    orientation: 'horizontal',
    showUnfilled: true,
    sizing: 'auto',
    valueMode: 'color',
  }, { color: { mode: 'thresholds' } }),
  barchart(title, w, h):: panel('barchart', title, w, h, {
    barWidth: 0.9,
    groupWidth: 0.7,
    legend: { showLegend: true, displayMode: 'list', placement: 'bottom', calcs: [] },
    orientation: 'horizontal',
    tooltip: { mode: 'multi', sort: 'none' },
    xTickLabelRotation: 0,
    xTickLabelSpacing: 0,
  }, { color: { mode: 'palette-classic' } }),
  table(title, w, h):: panel('table', title, w, h, {
    cellHeight: 'sm',
    footer: { show: false },
    showHeader: true,
  }, { color: { mode: 'thresholds' } }),
  timeseries(title, w, h):: panel('timeseries', title, w, h, {
    tooltip: { mode: 'multi', sort: 'desc' },
  }, { color: { mode: 'palette-classic' } }),

  row(title, panels):: { type: 'row', title: title, collapsed: false, panels: [] } + { items:: panels },

  // A query variable over label values, multi-select with "All".
  variable(name, label, query, allValue=null):: {
    name: name,
    label: label,
    type: 'query',
    datasource: datasource,
    query: query,
    definition: query,
    refresh: 2,
    multi: true,
    includeAll: true,
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    regex: '',
    sort: 1,
    hide: 0,
  } + (if allValue == null then {} else { allValue: allValue }),

  // The data source picker every panel's queries go through.
  datasourceVariable:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    current: {},
    options: [],
    refresh: 1,
    regex: '',
    hide: 0,
    includeAll: false,
    multi: false,
  },

  // The dashboard: rows laid out and numbered, the variables after the data source picker.
  dashboard(uid, title, description, tags, variables, rows):: {
    uid: uid,
    title: title,
    description: description,
    tags: tags,
    editable: true,
    graphTooltip: 1,
    time: { from: 'now-7d', to: 'now' },
    timepicker: {},
    timezone: 'browser',
    refresh: '5m',
    schemaVersion: 39,
    version: 1,
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    links: [],
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    templating: { list: [$.datasourceVariable] + variables },
    panels: std.foldl(
      place,
      std.flattenArrays([[row] + row.items for row in rows]),
      { x: 0, y: 0, lineHeight: 0, id: 1, panels: [] },
    ).panels,
  },
}
