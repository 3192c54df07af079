// Prometheus durations in words, for alert text: '5m' -> '5 minutes', '1d' -> 'a day', '6h' -> '6 hours'.
local units = {
  s: ['a second', 'seconds'],
  m: ['a minute', 'minutes'],
  h: ['an hour', 'hours'],
  d: ['a day', 'days'],
  w: ['a week', 'weeks'],
};

{
  duration(text)::
    local unit = text[std.length(text) - 1];
    local count = std.substr(text, 0, std.length(text) - 1);
    assert std.objectHas(units, unit) && std.length(count) > 0 : 'not a simple duration: ' + text;
    if count == '1' then units[unit][0] else count + ' ' + units[unit][1],

  // A ratio as a whole percentage: 0.2 -> '20 %'.
  percent(ratio):: '%d %%' % std.floor(ratio * 100 + 0.5),
}
