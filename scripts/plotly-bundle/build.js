// esbuild settings of plotly.js's own esbuild-config.js (glsl shaders, inline css, stream/regl aliases)
const esbuild = require('esbuild');
const { environmentPlugin } = require('esbuild-plugin-environment');
const { glsl } = require('esbuild-plugin-glsl');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');
const version = require('plotly.js/package.json').version;
esbuild.build({
  entryPoints: [__dirname + '/entry.js'], outfile: process.argv[2],
  format: 'iife', globalName: 'Plotly', bundle: true, minify: true, sourcemap: false, legalComments: 'eof',
  banner: { js: `/* plotly.js v${version} (MIT license, Copyright Plotly, Inc.): core + scattergl + scatter3d,` +
                ' built by scripts/plotly-bundle/build.sh for the map view */' },
  plugins: [InlineCSSPlugin(), glsl({ minify: true }), environmentPlugin({ NODE_DEBUG: false })],
  alias: { regl: '@plotly/regl', stream: 'stream-browserify' },
  define: { global: 'window', 'define.amd': 'false' }, target: 'es2016', logLevel: 'warning',
}).catch(() => process.exit(1));
