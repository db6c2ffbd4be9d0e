// Draws a run result's Plotly figure (#result-figure, its JSON in data-figure)
// with the plotly.js the app serves itself: no CDN, no inline script (CSP).
(function () {
  "use strict";
  var node = document.getElementById("result-figure");
  if (!node || !window.Plotly) {
    return;
  }
  var figure = JSON.parse(node.getAttribute("data-figure"));
  // No mode bar: its buttons would take the site's button style, and a result
  // chart is read, not edited.
  window.Plotly.newPlot(node, figure.data || [], figure.layout || {}, {
    responsive: true,
    displayModeBar: false,
  });
})();
