// The first map of a page, early (app/assets.py HEAD; the server puts it at the top of the page's
// <head>, and Gradio's head brings it again, which then does nothing). It fetches the map a new page
// draws first (/mapdefault, points included), plotly.js and the map component's own code
// (/static/mapview.js) while Gradio's bundles load, and draws the map with that code into a stand-in
// element off-screen, BEFORE Gradio mounts. The map component (mapview.js as gr.HTML's js_on_load)
// then adopts the stand-in: the same DOM nodes move into the component, Plotly's WebGL canvas and
// its context with them, so nothing is drawn twice (benchmarks/ui_map_load.py, "early" column).
(function () {
  if (window.__AE_HEAD) return;
  window.__AE_HEAD = true;
  performance.mark('ae:head');
  const TEMPLATE = __AE_TEMPLATE__;
  window.__AE_MAPDEFAULT = fetch('/mapdefault').then(r => r.ok ? r.json() : null).catch(() => null);
  const code = fetch('/static/mapview.js').then(r => r.ok ? r.text() : null).catch(() => null);
  // the same loader as mapview.js's loadPlotly: our own plotly.js instance (Gradio's gr.Plot loads another)
  function loadPlotly(cb) {
    if (!window.__AE_PLOTLY && !window.__AE_PLOTLY_LOADING) {
      window.__AE_PLOTLY_LOADING = true;
      const s = document.createElement('script');
      s.src = '/static/plotly.min.js'; s.async = true;
      s.onload = () => { window.__AE_PLOTLY = window.Plotly; performance.mark('ae:plotly'); };
      document.head.appendChild(s);
    }
    const wait = () => { if (window.__AE_PLOTLY) cb(); else setTimeout(wait, 10); };
    wait();
  }
  const whenBody = (cb) => {  // the slim plotly bundle needs the body to exist
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', cb); else cb();
  };
  window.__AE_MAPDEFAULT.then(d => {
    performance.mark('ae:data');
    if (!d || !d.value || !d.points) return;
    if (!__AE_EARLY_DRAW__) { whenBody(() => loadPlotly(() => {})); return; }  // drawn when the component mounts
    // plotly.js's evaluation (~0.5 s) and the draw run when the page is idle: Gradio's own start (its
    // config read, the requests for its components' bundles) goes first; they overlap its downloads
    const idle = (cb) => window.requestIdleCallback ? requestIdleCallback(cb, { timeout: 1500 }) : setTimeout(cb, 0);
    whenBody(() => idle(() => loadPlotly(() => idle(() => code.then(src => {
      // the component mounted meanwhile (it took the prefetch), or the code is not there: it draws itself
      if (!src || window.__AE_MAPDEFAULT === null || window.__AE_EARLY) return;
      const holder = document.createElement('div');
      holder.className = 'ae-early';
      // off-screen, at the width the map component will have (a different one costs a resize): Gradio's
      // container takes the largest of its breakpoints that fits the window, less 88 px of paddings
      const bp = [1920, 1536, 1280, 1024, 768, 640].find(b => window.innerWidth >= b) || window.innerWidth;
      const w = Math.max(300, Math.min(bp, document.documentElement.clientWidth) - 88);
      holder.style.cssText = 'position:fixed;left:-20000px;top:0;width:' + w + 'px;pointer-events:none;';
      holder.innerHTML = TEMPLATE;
      holder.__aeEarly = true;
      document.body.appendChild(holder);
      // trigger/props/watch stand-ins: the adopting component connects them to its own
      const link = { trigger: null, props: null, watchers: [] };
      const props = { get value() { return link.props ? link.props.value : null; },
                      set value(v) { if (link.props) link.props.value = v; } };
      window.__AE_EARLY_LINK = link;
      try {
        new Function('element', 'trigger', 'props', 'server', 'upload', 'watch', src)(
          holder, (name, data) => { if (link.trigger) link.trigger(name, data); }, props, {}, null,
          (name, cb) => { link.watchers.push([name, cb]); });
      } catch (e) { holder.remove(); window.__AE_EARLY = null; }
    })))));
  });
})();
