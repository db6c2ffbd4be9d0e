// Draws a run result's Plotly figure (#result-figure, its JSON in data-figure)
// with the plotly.js the app serves itself: no CDN, no inline script (CSP).
(function () {
  "use strict";
  var node = document.getElementById("result-figure");
  if (!node || !window.Plotly) {
    return;
  }
  var figure = JSON.parse(node.getAttribute("data-figure"));
  window.Plotly.newPlot(node, figure.data || [], figure.layout || {}, {
    responsive: true,
    displaylogo: false,
  });
})();
