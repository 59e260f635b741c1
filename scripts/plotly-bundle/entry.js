// The map's plotly.js: core + scattergl (2D) + scatter3d (3D) only. See build.sh.
var Plotly = require('plotly.js/lib/core');
Plotly.register([require('plotly.js/lib/scattergl'), require('plotly.js/lib/scatter3d')]);
module.exports = Plotly;
