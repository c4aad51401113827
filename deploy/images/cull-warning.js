/* tmpnb: a banner a few minutes before this notebook server is culled.
   The service answers on the notebook's own origin to whoever sends the
   notebook's token, and 404 to anyone else; it words the warning in the
   participant's language. Added to JupyterLab's page by build-jupyter;
   nothing is fetched from elsewhere. */
(function () {
  var element = document.getElementById('jupyter-config-data');
  var config = element ? JSON.parse(element.textContent) : {};
  var base = config.baseUrl;
  var found = base && /^(.*\/)user\/([A-Za-z0-9]+)\/$/.exec(base);
  if (!found) {
    return; // not behind tmpnb
  }
  var url = found[1] + 'api/notebooks/' + found[2] + '/time-left';
  var banner = null;
  var dismissed = null; // the reason of the warning the participant closed
  var timer = null;

  function hide() {
    if (banner) {
      banner.remove();
      banner = null;
    }
  }

  function show(answer) {
    if (!banner) {
      banner = document.createElement('div');
      banner.id = 'tmpnb-cull-warning';
      banner.setAttribute('role', 'status');
      banner.setAttribute('aria-live', 'polite');
      banner.style.cssText = 'position:fixed;top:0;left:50%;transform:translateX(-50%);z-index:10000;' +
        'max-width:40em;margin-top:4px;padding:8px 12px;display:flex;gap:12px;align-items:flex-start;' +
        'background:#fff3cd;color:#3d2e00;border:1px solid #b38600;border-radius:4px;font:14px/1.4 sans-serif;' +
        'box-shadow:0 2px 6px rgba(0,0,0,.25)';
      var text = document.createElement('span');
      var close = document.createElement('button');
      close.type = 'button';
      close.textContent = '\u00d7';
      close.style.cssText = 'font:inherit;font-size:18px;line-height:1;background:none;border:0;color:inherit;cursor:pointer';
      close.addEventListener('click', function () {
        dismissed = banner.getAttribute('data-reason');
        hide();
      });
      banner.appendChild(text);
      banner.appendChild(close);
      document.body.appendChild(banner);
    }
    banner.setAttribute('data-reason', answer.reason);
    banner.lastChild.setAttribute('aria-label', answer.dismiss);
    if (banner.firstChild.textContent !== answer.message) {
      banner.firstChild.textContent = answer.message;
    }
  }

  function ask() {
    var headers = { Accept: 'application/json', Authorization: 'token ' + (config.token || '') };
    fetch(url, { credentials: 'omit', headers: headers, cache: 'no-store' })
      .then(function (response) {
        if (response.status === 404) {
          clearInterval(timer); // not this visitor's notebook, or it has ended
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (answer) {
        if (!answer) {
          return;
        }
        if (!answer.warn) {
          dismissed = null; // the next warning shows again
          hide();
        } else if (answer.reason !== dismissed) {
          show(answer);
        }
      })
      .catch(function () {}); // the service is out of reach for now: ask again later
  }

  timer = setInterval(ask, 30000);
  ask();
})();
