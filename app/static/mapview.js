// Map view: a Plotly scatter (WebGL) inside gr.HTML. Click a point to hear it; in playback
// mode a red marker follows the playing file's trajectory, driven by the <audio> element's
// currentTime in the browser (no server round-trips). Runs as gr.HTML's js_on_load:
// Function('element', 'trigger', 'props', 'server', 'upload', 'watch', code).
(function () {
  // the first map may have been drawn before this component mounted (app/static/mapearly.js): that
  // stand-in's nodes move in here, Plotly's canvas with them, and its code serves this component
  const early = window.__AE_EARLY;
  if (!element.__aeEarly && early && !early.adopted && (element.querySelector('.ae-map') || element).closest('#ae-map-main')) {
    early.adopt(element, trigger, props, watch);
    return;
  }
  const root = element;
  const box = root.querySelector('.ae-map');
  const plotDiv = root.querySelector('.ae-plot');
  const audio = root.querySelector('.ae-audio');
  const note = root.querySelector('.ae-note');
  const title = root.querySelector('.ae-title');
  const nowPlaying = root.querySelector('.ae-now');
  const timeline = root.querySelector('.ae-timeline');
  const wave = root.querySelector('.ae-wave');
  const spec = root.querySelector('.ae-spec');
  const cursor = root.querySelector('.ae-cursor');
  const overlay = root.querySelector('.ae-marker');
  const playRow = root.querySelector('.ae-play');
  const GREY = '#c8c8c8';
  const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf',
    '#bcbd22', '#7f7f7f', '#393b79', '#637939', '#8c6d31', '#843c39', '#7b4173', '#3182bd', '#e6550d',
    '#31a354', '#756bb1', '#636363'];
  // state.pts: the drawn map's points, kept here and never in props.value: Gradio clones and
  // proxies its components' values, which costs seconds of main thread for 50k points
  const state = { v: null, pts: null, ptsUrl: null, traj: null, markerTrace: -1, trailTrace: -1, last3d: 0,
                  lastKey: '', rot: 0, playingIdx: -1, lastPointClick: 0,
                  // the selection: indices into state.pts (Python keeps it as point ids and sends it
                  // back as selected_idx with every map it draws)
                  sel: new Set(), selTrace: -1, nBase: 0, shift: false,
                  audition: null, hoverPlay: false, hoverIdx: -1, hoverTimer: 0 };
  const selectInfo = root.querySelector('.ae-selinfo');
  const auditionBtn = root.querySelector('.ae-audition');
  const hoverBox = root.querySelector('.ae-hoverplay');
  box.__aeState = state;

  // our own plotly.js instance: Gradio's gr.Plot lazy-loads another version and overwrites
  // window.Plotly, so the map never draws with whatever window.Plotly happens to be
  function plotly() { return window.__AE_PLOTLY; }

  // plotly.js (~0.3 s to evaluate for the slim bundle, ~0.8 s for the full one) is fetched early by
  // a <link rel=preload> in the page head and only run when a map is to be drawn: its evaluation
  // overlaps the fetch of the points instead of delaying the app's first events
  function loadPlotly() {
    if (plotly() || window.__AE_PLOTLY_LOADING) return;
    window.__AE_PLOTLY_LOADING = true;
    const s = document.createElement('script');
    s.src = '/static/plotly.min.js';
    s.async = true;
    s.onload = () => { window.__AE_PLOTLY = window.Plotly; performance.mark('ae:plotly'); };
    document.head.appendChild(s);
  }

  function whenPlotly(cb, tries) {
    if (plotly()) { cb(); return; }
    if ((tries || 0) > 2400) { note.textContent = 'Plotly did not load'; return; }
    setTimeout(() => whenPlotly(cb, (tries || 0) + 1), 25);
  }

  function audioUrl(v, i) {
    const p = state.pts;
    if (p.url) return p.url[i];
    return '/audio/' + encodeURIComponent(v.library) + '/' + p.path[i].split('/').map(encodeURIComponent).join('/');
  }

  function esc(t) {
    return String(t).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  function hover(p, i) {
    let s = esc(p.path[i]);
    if (p.start_s && p.start_s[i]) s += ' @ ' + p.start_s[i].toFixed(1) + ' s';
    if (p.label[i] != null) s += '<br>label: ' + esc(p.label[i]);
    if (p.pred_label && p.pred_label[i] != null) s += '<br>suggested: ' + esc(p.pred_label[i]) +
      ' (' + (+p.pred_conf[i]).toFixed(2) + ')';
    if (p.user_tags && p.user_tags[i]) s += '<br>tags: ' + esc(p.user_tags[i]);
    if (p.tags && p.tags[i]) s += '<br>model tags: ' + p.tags[i];
    return s;
  }

  function baseTraces(v) {
    const p = state.pts, is3d = v.dims === 3, n = p.x.length;
    const type = is3d ? 'scatter3d' : 'scattergl';
    const size = is3d ? (n > 5000 ? 2 : 3.5) : (n > 20000 ? 3 : n > 3000 ? 5 : 8);
    const traces = [];
    const playback = !!v.trajectory;
    const own = new Set(v.own_idx || []);
    const hl = new Set(v.highlight_idx || []);
    const mk = (idx, name, color, extra) => {
      const t = {
        type, mode: 'markers', name, x: idx.map(i => p.x[i]), y: idx.map(i => p.y[i]),
        customdata: idx, text: idx.map(i => hover(p, i)), hovertemplate: '%{text}<extra></extra>',
        marker: Object.assign({ size, color, opacity: is3d ? 0.85 : 0.8 }, extra || {}),
      };
      if (is3d) t.z = idx.map(i => p.z[i]);
      return t;
    };
    const all = [...Array(n).keys()];
    if (playback) {
      const others = all.filter(i => !own.has(i));
      const mine = all.filter(i => own.has(i));
      traces.push(mk(others, 'other clips', GREY));
      if (mine.length) traces.push(mk(mine, 'this file', '#2ca02c', { size: size * 1.8 }));
    } else if (v.color && v.color.mode === 'continuous') {
      traces.push(mk(all, v.color.name, p.color_values, {
        colorscale: 'Viridis', showscale: true, colorbar: { title: { text: v.color.name }, thickness: 12 } }));
    } else {
      // categories: the label, or a categorical colouring (cluster, a user tag) sent as color_values
      const catMode = v.color && v.color.mode === 'categorical';
      const none = catMode ? (v.color.name === 'cluster' ? '(noise)' : '(not ' + v.color.name + ')') : '(no label)';
      const src = catMode ? p.color_values : p.label;
      const cats = src.map(l => l == null ? none : l);
      const names = [...new Set(cats)].sort((a, b) => a === none ? 1 : b === none ? -1 : (a < b ? -1 : 1));
      // per-point opacity (a suggested label's confidence) as rgba colours: works in 2D and 3D
      const alpha = catMode && p.color_alpha ? p.color_alpha : null;
      const rgba = (hex, a) => 'rgba(' + [1, 3, 5].map(o => parseInt(hex.slice(o, o + 2), 16)).join(',') + ',' +
        Math.max(0.08, Math.min(1, a == null ? 1 : a)).toFixed(3) + ')';
      names.forEach((c, k) => {
        const idx = all.filter(i => cats[i] === c);
        const col = c === none ? GREY : PALETTE[k % PALETTE.length];
        traces.push(mk(idx, esc(c) + ' (' + idx.length + ')', alpha ? idx.map(i => rgba(col, alpha[i])) : col,
          alpha ? { opacity: 1 } : undefined));
      });
    }
    state.nBase = traces.length;
    state.selTrace = -1;
    if (!playback) {
      const sel = [...state.sel].filter(i => i < n);
      const t = mk(sel, 'selection (' + sel.length + ')', 'rgba(0,0,0,0)',
        { size: size * 1.9, line: { color: '#111', width: 2 }, opacity: 1 });
      traces.push(t);
      state.selTrace = traces.length - 1;
    }
    if (hl.size) {
      const idx = [...hl].filter(i => i < n);
      traces.push(mk(idx, 'selected', '#d62728', { size: size * 2.6, symbol: is3d ? 'diamond' : 'star',
        line: { color: '#000', width: 1 } }));
    }
    return traces;
  }

  function render() { show(props.value); }

  // the map a new page draws first: fetched by the page's head script (assets.HEAD) while Gradio
  // loads, drawn as soon as this component mounts; the page's draw event then returns the same map
  // (same token: `sig` matches) and nothing is drawn twice
  function prefetched() {
    const pre = window.__AE_MAPDEFAULT;
    if (!pre || !(root.__aeEarly || box.closest('#ae-map-main'))) return;
    window.__AE_MAPDEFAULT = null;  // one component takes it
    loadPlotly();
    if (!root.__aeEarly) {
      box.dataset.mountAt = String(Math.round(performance.now()));
      performance.mark('ae:mount');
    }
    state.pre = pre.then(d => {
      state.pre = null;
      box.dataset.prefetchAt = String(Math.round(performance.now()));
      const cur = props.value;
      const ok = d && d.value && d.points && !(cur && (cur.message || (cur.points_url && cur.points_url !== d.value.points_url)));
      if (!ok) { if (cur) render(); return; }  // Gradio asked for another map meanwhile: that one is drawn
      state.pts = d.points; state.ptsUrl = d.value.points_url;
      box.dataset.prefetched = '1';
      show(cur && cur.points_url ? cur : d.value);
    }).catch(() => { state.pre = null; render(); });
  }

  function show(v) {
    const sig = v ? JSON.stringify(v) : '';
    if (sig && sig === state.sig && state.pts && state.ptsUrl === v.points_url) { state.v = v; return; }  // drawn already
    if (v && v.points_url && state.ptsUrl !== v.points_url && state.pre) return;  // the prefetch decides (see prefetched)
    state.v = v;
    state.sel = new Set((v && v.selected_idx) || []);
    stopAudition();
    if (v && v.points_url && state.ptsUrl !== v.points_url) {
      // the points come as JSON from the server's /mapdata route, not through the component value
      const url = v.points_url;
      state.loading = url;
      note.textContent = 'loading ' + (v.n || '') + ' points…';
      loadPlotly();
      fetch(url).then(r => { if (!r.ok) throw new Error('map data ' + r.status); return r.json(); })
        .then(pts => {
          if (state.loading !== url) return;
          state.pts = pts; state.ptsUrl = url;
          render();
        })
        .catch(e => { note.textContent = String(e); });
      return;
    }
    if (!v || !v.points_url) { state.pts = null; state.ptsUrl = null; state.sig = ''; }
    if (!v || !state.pts || !state.pts.x || state.pts.x.length === 0) {
      const P = plotly();
      if (P) P.purge(plotDiv);
      plotDiv.__aeBound = false;
      plotDiv.innerHTML = '<div class="ae-empty">' + ((v && typeof v.message === 'string') ? v.message : 'Nothing to show yet.') + '</div>';
      title.textContent = ''; note.textContent = '';
      timeline.style.display = 'none';
      playRow.style.display = 'none';  // nothing to play without a map
      return;
    }
    loadPlotly();
    state.sig = sig;
    whenPlotly(() => draw(v));
  }

  function draw(v) {
    const P = plotly();
    const is3d = v.dims === 3;
    title.textContent = v.title || '';
    note.textContent = v.note || '';
    playRow.style.display = '';
    const traces = baseTraces(v);
    state.traj = null; state.markerTrace = -1; state.trailTrace = -1;
    if (v.trajectory && v.trajectory.t && v.trajectory.t.length) {
      const src = v.trajectory;  // plain copies: reading a proxied value every frame is slow
      const tr = { t: Array.from(src.t), x: Array.from(src.x), y: Array.from(src.y),
                   z: src.z ? Array.from(src.z) : undefined };
      state.traj = tr;
      const path = { type: is3d ? 'scatter3d' : 'scattergl', mode: 'lines', name: 'trajectory',
        x: tr.x, y: tr.y, line: { color: 'rgba(44,160,44,0.55)', width: is3d ? 3 : 2 }, hoverinfo: 'skip' };
      if (is3d) path.z = tr.z;
      if (!(v.trail_s > 0)) traces.push(path);
      if (v.trail_s > 0) {
        const trail = { type: is3d ? 'scatter3d' : 'scattergl', mode: 'lines', name: 'trail', x: [], y: [],
          line: { color: '#2ca02c', width: 5 }, hoverinfo: 'skip' };
        if (is3d) trail.z = [];
        traces.push(trail);
        state.trailTrace = traces.length - 1;
      }
      const marker = { type: is3d ? 'scatter3d' : 'scattergl', mode: 'markers', name: 'now playing',
        x: [tr.x[0]], y: [tr.y[0]], marker: { color: '#e00000', size: is3d ? 9 : 16,
        line: { color: '#fff', width: 2 } }, hoverinfo: 'skip' };
      if (is3d) marker.z = [tr.z[0]];
      traces.push(marker);
      state.markerTrace = traces.length - 1;
    }
    const layout = {
      margin: { l: 10, r: 10, t: 10, b: 10 }, height: v.height || 560, showlegend: true,
      // a narrow panel (Compare) keeps its width for the points: the legend goes below, in rows
      legend: v.legend === 'below' ? { itemsizing: 'constant', orientation: 'h', x: 0, y: -0.02, yanchor: 'top',
        font: { size: 11 } } : { itemsizing: 'constant', orientation: 'v' }, uirevision: v.key || 'map',
      hovermode: 'closest', dragmode: is3d ? 'orbit' : 'pan', paper_bgcolor: 'rgba(0,0,0,0)',
    };
    if (is3d) {
      layout.scene = { xaxis: { title: { text: '' }, showticklabels: false }, yaxis: { title: { text: '' }, showticklabels: false },
        zaxis: { title: { text: '' }, showticklabels: false }, camera: { eye: { x: 1.5, y: 1.5, z: 1.0 } } };
    } else {
      layout.xaxis = { showticklabels: false, zeroline: false, showgrid: false };
      layout.yaxis = { showticklabels: false, zeroline: false, showgrid: false, scaleanchor: 'x' };
      if (state.pts.density) layout.images = [densityImage(state.pts.density)];
    }
    if (!plotDiv.classList.contains('js-plotly-plot')) { plotDiv.innerHTML = ''; plotDiv.__aeBound = false; }
    const t0 = performance.now();
    box.dataset.draws = String(+(box.dataset.draws || 0) + 1);
    box.dataset.reactAt = String(Math.round(t0));
    performance.mark('ae:draw-start');
    P.react(plotDiv, traces, layout, { responsive: true, displaylogo: false, scrollZoom: true }).then(() => {
      box.dataset.drawMs = String(Math.round(performance.now() - t0));
      performance.mark('ae:draw-end');
      box.dataset.nPoints = String(state.pts.x.length);
      box.dataset.rendered = String(Date.now());
      showSelection();
      // painted: two animation frames later, the drawn map has reached the screen
      requestAnimationFrame(() => requestAnimationFrame(() => {
        box.dataset.paintMs = String(Math.round(performance.now() - t0));
        if (!box.isConnected || box.closest('.ae-early')) return;  // off-screen: painted once adopted
        Promise.resolve(fitWidth()).then(() => {
          box.dataset.painted = String(Date.now());
          performance.mark('ae:painted');
        });
      }));
      if (!plotDiv.__aeBound) {
        plotDiv.__aeBound = true;
        if (!plotDiv.__aeDensityBound) { plotDiv.__aeDensityBound = true; bindDensityClick(); }
        plotDiv.on('plotly_click', (ev) => {
          const pt = ev.points && ev.points[0];
          state.lastPointClick = performance.now();
          if (!pt || pt.customdata === undefined || pt.customdata === null) return;
          const i = pt.customdata;
          const vv = state.v;
          if ((state.shift || (ev.event && ev.event.shiftKey)) && !vv.trajectory) {  // shift-click adds a point to the selection, or removes it
            if (state.sel.has(i)) state.sel.delete(i); else state.sel.add(i);
            selectionChanged();
            return;
          }
          if (!vv.trajectory) play(vv, i);
          trigger('point_click', { token: vv.token, index: i, clip: state.pts.path[i] });
        });
        plotDiv.on('plotly_selected', (ev) => {  // box or lasso (2D)
          // Plotly also reports an empty selection (a click in select mode, its own clean-up): ignored;
          // the panel's Clear button clears
          if (state.clearing || !ev || !ev.points || !ev.points.length || state.v.trajectory) return;
          const got = new Set(state.shift ? state.sel : []);
          for (const pt of ev.points) {
            if (pt.curveNumber < state.nBase && pt.customdata !== undefined && pt.customdata !== null) got.add(pt.customdata);
          }
          state.sel = got;
          selectionChanged();
          // our own ring trace shows the selection; Plotly's dimming and outline would disagree with it
          setTimeout(() => {
            const P = plotly();
            state.clearing = true;
            Promise.resolve(P.restyle(plotDiv, { selectedpoints: [null] }, [...Array(state.nBase).keys()]))
              .then(() => P.relayout(plotDiv, { selections: [] }))
              .finally(() => { state.clearing = false; });
          }, 0);
        });
        plotDiv.on('plotly_hover', (ev) => {
          if (!state.hoverPlay || state.v.trajectory) return;
          const pt = ev.points && ev.points[0];
          if (!pt || pt.customdata === undefined || pt.customdata === null || pt.customdata === state.hoverIdx) return;
          clearTimeout(state.hoverTimer);
          const i = pt.customdata;
          state.hoverTimer = setTimeout(() => { state.hoverIdx = i; play(state.v, i); }, 90);
        });
      }
    });
    setupTimeline(v);
    if (v.audio_url) {
      if (audio.getAttribute('src') !== v.audio_url) { audio.src = v.audio_url; audio.load(); }
      nowPlaying.textContent = v.audio_label || '';
      if (v.autoplay) audio.play().catch(() => {});
    }
  }

  // a map drawn off-screen (mapearly.js) at another width than its place's: resized to it
  function fitWidth() {
    const P = plotly(), fl = plotDiv._fullLayout;
    if (!P || !fl || !plotDiv.classList.contains('js-plotly-plot') || Math.abs(fl.width - plotDiv.clientWidth) < 2) return null;
    box.dataset.resized = String(+(box.dataset.resized || 0) + 1);
    return P.Plots.resize(plotDiv);
  }

  function showSelection() {
    const n = state.sel.size;
    selectInfo.textContent = n ? n + ' selected' : '';
    auditionBtn.style.display = n ? '' : 'none';
    box.dataset.selected = String(n);
    const P = plotly(), p = state.pts;
    if (!P || !p || state.selTrace < 0 || !plotDiv.classList.contains('js-plotly-plot')) return;
    const idx = [...state.sel];
    const upd = { x: [idx.map(i => p.x[i])], y: [idx.map(i => p.y[i])], customdata: [idx],
                  text: [idx.map(i => hover(p, i))], name: 'selection (' + idx.length + ')' };
    if (state.v.dims === 3) upd.z = [idx.map(i => p.z[i])];
    P.restyle(plotDiv, upd, [state.selTrace]);
  }

  function selectionChanged() {
    showSelection();
    trigger('selection', { token: state.v.token, indices: [...state.sel] });
  }

  // audition: the selection played one clip after another (a segment of a long file up to its end)
  function stopAudition() {
    if (!state.audition) return;
    state.audition = null;
    auditionBtn.textContent = '▶ audition selection';
    audio.pause();
  }

  function auditionNext() {
    const a = state.audition;
    if (!a) return;
    a.pos += 1;
    if (a.pos >= a.order.length) { stopAudition(); box.dataset.auditioned = String(a.order.length); return; }
    box.dataset.auditionPos = String(a.pos);
    play(state.v, a.order[a.pos]);
  }

  auditionBtn.addEventListener('click', () => {
    if (state.audition) { stopAudition(); return; }
    if (!state.sel.size) return;
    state.audition = { order: [...state.sel].sort((a, b) => a - b), pos: -1 };
    auditionBtn.textContent = '■ stop';
    auditionNext();
  });
  audio.addEventListener('ended', () => auditionNext());
  audio.addEventListener('timeupdate', () => {
    const a = state.audition, p = state.pts;
    if (!a || !p || !p.end_s || a.pos < 0) return;
    const end = p.end_s[a.order[a.pos]];
    if (end && audio.currentTime >= end) auditionNext();
  });
  hoverBox.addEventListener('change', () => { state.hoverPlay = hoverBox.checked; state.hoverIdx = -1; });
  window.addEventListener('keydown', (e) => { if (e.key === 'Shift') state.shift = true; });
  window.addEventListener('keyup', (e) => { if (e.key === 'Shift') state.shift = false; });
  window.addEventListener('blur', () => { state.shift = false; });

  function play(v, i) {
    const url = audioUrl(v, i);
    const p = state.pts;
    const start = p.start_s ? p.start_s[i] || 0 : 0;
    state.playingIdx = i;
    nowPlaying.textContent = '▶ ' + p.path[i] + (start ? ' @ ' + start.toFixed(1) + ' s' : '') +
      (p.label[i] ? '  [' + p.label[i] + ']' : '');
    if (audio.getAttribute('src') !== url) { audio.src = url; }
    const go = () => { try { audio.currentTime = start; } catch (e) {} audio.play().catch(() => {}); };
    if (audio.readyState >= 1) go(); else audio.addEventListener('loadedmetadata', go, { once: true });
    box.dataset.playing = p.path[i];
  }

  // a big map's level of detail: the points not drawn, as an image of their log counts on a grid
  // under the drawn ones (the slim plotly bundle has no heatmap; an image is what datashader sends too)
  function densityImage(d) {
    const nx = d.x.length, ny = d.y.length;
    const cv = document.createElement('canvas');
    cv.width = nx; cv.height = ny;
    const ctx = cv.getContext('2d'), img = ctx.createImageData(nx, ny);
    let mx = 0;
    for (const row of d.z) for (const c of row) if (c > mx) mx = c;
    const top = Math.log1p(mx) || 1;
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const c = d.z[j][i];
        if (!c) continue;
        const o = ((ny - 1 - j) * nx + i) * 4;  // row 0 of the canvas is the top (largest y)
        img.data[o] = 60; img.data[o + 1] = 60; img.data[o + 2] = 60;
        img.data[o + 3] = Math.round(40 + 160 * Math.log1p(c) / top);
      }
    }
    ctx.putImageData(img, 0, 0);
    const wx = nx > 1 ? d.x[1] - d.x[0] : 1, wy = ny > 1 ? d.y[1] - d.y[0] : 1;
    return { source: cv.toDataURL('image/png'), xref: 'x', yref: 'y', x: d.x[0] - wx / 2, y: d.y[ny - 1] + wy / 2,
             sizex: wx * nx, sizey: wy * ny, sizing: 'stretch', xanchor: 'left', yanchor: 'top', layer: 'below' };
  }

  // a click off the drawn points of a big map (on the density): the server finds the nearest of all points
  function bindDensityClick() {
    let down = null;
    plotDiv.addEventListener('mousedown', (e) => { down = [e.clientX, e.clientY]; });
    plotDiv.addEventListener('click', (e) => {
      const v = state.v, fl = plotDiv._fullLayout;
      if (!v || v.trajectory || v.dims !== 2 || !state.pts || !state.pts.density || !fl || !fl.xaxis || !fl.xaxis.p2l) return;
      if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4) return;  // a pan or a box, not a click
      const r = plotDiv.getBoundingClientRect();
      const px = e.clientX - r.left - fl._size.l, py = e.clientY - r.top - fl._size.t;
      if (px < 0 || py < 0 || px > fl._size.w || py > fl._size.h) return;
      const t = performance.now();
      setTimeout(() => {  // plotly_click (a drawn point under the mouse) fires first and wins
        if (state.lastPointClick && state.lastPointClick >= t - 300) return;
        playNearest(v, fl.xaxis.p2l(px), fl.yaxis.p2l(py));
      }, 60);
    });
  }

  // a click on the density layer: the server finds the nearest of all the map's points and it plays
  function playNearest(v, x, y) {
    fetch('/mapnearest/' + v.token + '?x=' + encodeURIComponent(x) + '&y=' + encodeURIComponent(y))
      .then(r => { if (!r.ok) throw new Error('nearest clip: ' + r.status); return r.json(); })
      .then(c => {
        const url = '/audio/' + encodeURIComponent(v.library) + '/' + c.path.split('/').map(encodeURIComponent).join('/');
        const start = c.start_s || 0;
        state.playingIdx = -1;
        nowPlaying.textContent = '▶ ' + c.path + (start ? ' @ ' + start.toFixed(1) + ' s' : '') + (c.label ? '  [' + c.label + ']' : '');
        if (audio.getAttribute('src') !== url) { audio.src = url; }
        const go = () => { try { audio.currentTime = start; } catch (e) {} audio.play().catch(() => {}); };
        if (audio.readyState >= 1) go(); else audio.addEventListener('loadedmetadata', go, { once: true });
        box.dataset.playing = c.path;
        trigger('point_click', { token: v.token, id: c.id, clip: c.path });
      })
      .catch(e => { note.textContent = String(e); });
  }

  function setupTimeline(v) {
    if (!v.waveform && !v.spectrogram_url) { timeline.style.display = 'none'; return; }
    timeline.style.display = 'block';
    if (v.spectrogram_url) { spec.src = v.spectrogram_url; spec.style.display = 'block'; } else spec.style.display = 'none';
    if (v.waveform) {
      const w = wave.clientWidth || 800, h = 60;
      wave.width = w; wave.height = h;
      const ctx = wave.getContext('2d');
      ctx.clearRect(0, 0, w, h);
      ctx.fillStyle = '#4a7bd0';
      const mn = v.waveform.min, mx = v.waveform.max, n = mn.length;
      for (let x = 0; x < w; x++) {
        const k = Math.floor(x / w * n);
        const y0 = (1 - mx[k]) * h / 2, y1 = (1 - mn[k]) * h / 2;
        ctx.fillRect(x, y0, 1, Math.max(1, y1 - y0));
      }
    }
  }

  function interp(tr, t) {
    const T = tr.t, n = T.length;
    if (t <= T[0]) return [tr.x[0], tr.y[0], tr.z ? tr.z[0] : 0, 0];
    if (t >= T[n - 1]) return [tr.x[n - 1], tr.y[n - 1], tr.z ? tr.z[n - 1] : 0, n - 1];
    let lo = 0, hi = n - 1;
    while (hi - lo > 1) { const m = (lo + hi) >> 1; if (T[m] <= t) lo = m; else hi = m; }
    const f = (t - T[lo]) / (T[hi] - T[lo] || 1);
    const L = (a) => a[lo] + f * (a[hi] - a[lo]);
    return [L(tr.x), L(tr.y), tr.z ? L(tr.z) : 0, lo];
  }

  function tick() {
    requestAnimationFrame(tick);
    const v = state.v, tr = state.traj;
    const dur = audio.duration;
    if (isFinite(dur) && dur > 0 && timeline.style.display !== 'none') {
      cursor.style.left = (100 * audio.currentTime / dur) + '%';
    }
    if (!v || !tr || state.markerTrace < 0) { overlay.style.display = 'none'; return; }
    const P = plotly();
    const t = audio.currentTime || 0;
    const [x, y, z, k] = interp(tr, t);
    box.dataset.markerX = x.toFixed(5); box.dataset.markerY = y.toFixed(5);
    box.dataset.markerZ = z.toFixed(5); box.dataset.markerT = t.toFixed(3);
    const key = x.toFixed(5) + ',' + y.toFixed(5) + ',' + z.toFixed(5);
    const fl = plotDiv._fullLayout;
    if (!fl || !P) return;
    if (v.dims === 2 && fl.xaxis && fl.xaxis.l2p) {
      // 2D: move a DOM marker over the plot: no WebGL redraw per frame
      const px = fl._size.l + fl.xaxis.l2p(x), py = fl._size.t + fl.yaxis.l2p(y);
      overlay.style.display = 'block';
      overlay.style.left = (plotDiv.offsetLeft + px) + 'px';
      overlay.style.top = (plotDiv.offsetTop + py) + 'px';
      if (state.trailTrace >= 0 && key !== state.lastKey && performance.now() - state.last3d > 60) {
        state.last3d = performance.now();
        const a = trailWindow(tr, t, v.trail_s);
        P.restyle(plotDiv, { x: [a.x], y: [a.y] }, [state.trailTrace]);
      }
      state.lastKey = key;
      return;
    }
    overlay.style.display = 'none';
    const now = performance.now();
    if (now - state.last3d < 50) return;  // 3D: restyle at most 20 times a second
    state.last3d = now;
    const upd = { x: [[x]], y: [[y]], z: [[z]] };
    const idx = [state.markerTrace];
    let layoutUpd = {};
    if (v.rotate && !audio.paused) {
      state.rot += 0.01;
      layoutUpd = { 'scene.camera.eye': { x: 2.0 * Math.cos(state.rot), y: 2.0 * Math.sin(state.rot), z: 0.9 } };
    }
    if (key === state.lastKey && !Object.keys(layoutUpd).length) return;
    state.lastKey = key;
    if (state.trailTrace >= 0) {
      const a = trailWindow(tr, t, v.trail_s);
      P.update(plotDiv, { x: [[x], a.x], y: [[y], a.y], z: [[z], a.z] }, layoutUpd, [state.markerTrace, state.trailTrace]);
    } else {
      P.update(plotDiv, upd, layoutUpd, idx);
    }
  }

  function trailWindow(tr, t, trail) {
    const out = { x: [], y: [], z: [] };
    for (let i = 0; i < tr.t.length; i++) {
      if (tr.t[i] > t) break;
      if (tr.t[i] >= t - trail) { out.x.push(tr.x[i]); out.y.push(tr.y[i]); if (tr.z) out.z.push(tr.z[i]); }
    }
    return out;
  }

  timeline.addEventListener('click', (ev) => {
    const r = timeline.getBoundingClientRect();
    if (isFinite(audio.duration)) audio.currentTime = (ev.clientX - r.left) / r.width * audio.duration;
  });
  audio.addEventListener('ended', () => { box.dataset.ended = String(Date.now()); });
  if (root.__aeEarly) {
    // drawn off-screen before the map component mounted: the component adopts these nodes
    window.__AE_EARLY = {
      adopted: false,
      adopt(el, realTrigger, realProps, realWatch) {
        this.adopted = true;
        performance.mark('ae:mount');
        box.dataset.mountAt = String(Math.round(performance.now()));
        box.dataset.early = '1';
        const link = window.__AE_EARLY_LINK;
        link.trigger = realTrigger; link.props = realProps;
        for (const [name, cb] of link.watchers) realWatch(name, cb);
        const mine = el.querySelector('.ae-map');
        if (mine) mine.replaceWith(box); else el.appendChild(box);
        root.remove();
        const drawn = box.dataset.rendered;
        const cur = realProps.value;
        if (cur && (cur.message || (cur.points_url && cur.points_url !== state.ptsUrl))) { render(); return; }  // another map asked for meanwhile
        // drawn already: on screen once resized to its place (if its width differs) and painted; else the
        // draw under way marks it (see draw)
        if (drawn) Promise.resolve(fitWidth()).then(() => requestAnimationFrame(() => requestAnimationFrame(() => {
          box.dataset.painted = String(Date.now());
          performance.mark('ae:painted');
        })));
      },
    };
    watch('value', render);  // connected to the component's own watch once adopted
    prefetched();
  } else {
    watch('value', render);
    render();
    prefetched();
  }
  requestAnimationFrame(tick);
})();
