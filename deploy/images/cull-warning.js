/* tmpnb: a banner a few minutes before this notebook server is culled, and
   beside it a small box to raise a hand (with an optional help text), to
   give the organisers a name, and to let a helper join live (Accept /
   Decline, then who is there and End); a line in the banner's place when the organiser
   sends a file, and the file browser shows it at once. The service answers on the notebook's own
   origin to whoever sends the notebook's token, and 404 to anyone else; it
   words the banner and the box in the participant's language. Added to
   JupyterLab's page by build-jupyter; nothing is fetched from elsewhere. */
(function () {
  var element = document.getElementById('jupyter-config-data');
  var config = element ? JSON.parse(element.textContent) : {};
  var base = config.baseUrl;
  var found = base && /^(.*\/)user\/([A-Za-z0-9]+)\/$/.exec(base);
  if (!found) {
    return; // not behind tmpnb
  }
  var api = found[1] + 'api/notebooks/' + found[2] + '/';
  var url = api + 'time-left';
  var banner = null;
  var dismissed = null; // the reason of the warning the participant closed
  var timer = null;
  var help = null; // the hand and name box, made from the first answer
  var announced = 'tmpnb-arrived-' + found[2]; // the last broadcast this tab said arrived

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

  // What the organiser sent: said once per tab (a reload does not repeat it),
  // then gone after a minute; JupyterLab's file browser lists it at once.
  function arrive(arrived, dismiss) {
    try {
      if (sessionStorage.getItem(announced) === String(arrived.id)) {
        return;
      }
      sessionStorage.setItem(announced, String(arrived.id));
    } catch (error) {} // storage refused: said at each answer for its ten minutes
    var refresh = document.querySelector('[data-command="filebrowser:refresh"]');
    if (refresh) {
      refresh.click();
    }
    var old = document.getElementById('tmpnb-arrival');
    if (old) {
      old.remove();
    }
    var line = make('div', { id: 'tmpnb-arrival' },
      'position:fixed;left:50%;transform:translateX(-50%);z-index:10000;max-width:40em;padding:8px 12px;' +
      'display:flex;gap:12px;align-items:flex-start;background:#e7f1ff;color:#0b2e59;border:1px solid #3f6fb5;' +
      'border-radius:4px;font:14px/1.4 sans-serif;box-shadow:0 2px 6px rgba(0,0,0,.25);top:' +
      (banner ? banner.offsetHeight + 12 : 4) + 'px');
    line.setAttribute('role', 'status');
    var close = make('button', { type: 'button' }, 'font:inherit;font-size:18px;line-height:1;background:none;border:0;color:inherit;cursor:pointer');
    close.setAttribute('aria-label', dismiss);
    close.textContent = '\u00d7';
    close.addEventListener('click', function () { line.remove(); });
    var text = make('span', {});
    line.append(text, close);
    document.body.appendChild(line);
    text.textContent = arrived.message; // into the live region once it is there, so it is read out
    setTimeout(function () { line.remove(); }, 60000);
  }

  function headers() {
    return { Accept: 'application/json', 'Content-Type': 'application/json', Authorization: 'token ' + (config.token || '') };
  }

  var BUTTON = 'font:inherit;padding:2px 8px;border:1px solid #5a6b7b;border-radius:3px;background:#fff;color:#1a2a3a;cursor:pointer';

  function make(tag, properties, style) {
    var made = document.createElement(tag);
    Object.keys(properties).forEach(function (name) { made[name] = properties[name]; });
    if (style) {
      made.style.cssText = style;
    }
    return made;
  }

  // A small form under the box: one field, Save and Cancel.
  function form(id, label, field, submit, cancelWord) {
    // No display on the form itself: its hidden attribute must hide it.
    var box = make('form', { id: id, hidden: true }, 'margin-top:6px');
    var caption = make('label', { htmlFor: field.id, textContent: label }, 'display:block;margin-bottom:4px');
    field.style.display = 'block';
    field.style.marginBottom = '4px';
    var buttons = make('div', {}, 'display:flex;gap:6px;justify-content:flex-end');
    var cancel = make('button', { type: 'button', textContent: cancelWord }, BUTTON);
    buttons.append(make('button', { type: 'submit', textContent: submit }, BUTTON), cancel);
    box.append(caption, field, buttons);
    cancel.addEventListener('click', function () { box.hidden = true; });
    // JupyterLab's shortcuts are not for what the participant types here.
    box.addEventListener('keydown', function (event) { event.stopPropagation(); });
    return box;
  }

  function makeHelp(words) {
    help = make('div', { id: 'tmpnb-help' }, 'position:fixed;top:4px;right:8px;z-index:10000;max-width:22em;padding:4px 8px;' +
      'background:#eef3f8;color:#1a2a3a;border:1px solid #5a6b7b;border-radius:4px;font:13px/1.4 sans-serif;box-shadow:0 1px 4px rgba(0,0,0,.2)');
    var row = make('div', {}, 'display:flex;gap:8px;align-items:center;justify-content:flex-end');
    help.hand = make('button', { type: 'button', id: 'tmpnb-hand' }, BUTTON);
    help.nameLink = make('button', { type: 'button', id: 'tmpnb-name' },
      'font:inherit;background:none;border:0;padding:0;color:#1f4e79;text-decoration:underline;cursor:pointer');
    row.append(help.hand, help.nameLink);
    help.status = make('div', { id: 'tmpnb-help-status' });
    help.status.setAttribute('role', 'status');
    help.text = make('textarea', { id: 'tmpnb-hand-text', rows: 2, maxLength: Number(words.hand_max) }, 'font:inherit;width:20em;box-sizing:border-box');
    help.handForm = form('tmpnb-hand-form', words.ask, help.text, words.raise, words.cancel);
    help.name = make('input', { id: 'tmpnb-name-input', type: 'text', maxLength: Number(words.name_max), autocomplete: 'name' }, 'font:inherit;width:20em;box-sizing:border-box');
    help.nameForm = form('tmpnb-name-form', words.name_label, help.name, words.save, words.cancel);
    help.live = make('div', { id: 'tmpnb-live', hidden: true }, 'margin-top:6px');
    help.liveText = make('div', { id: 'tmpnb-live-text' });
    help.liveText.setAttribute('role', 'status');
    var liveButtons = make('div', {}, 'display:flex;gap:6px;justify-content:flex-end;margin-top:4px');
    help.accept = make('button', { type: 'button', id: 'tmpnb-live-accept' }, BUTTON);
    help.decline = make('button', { type: 'button', id: 'tmpnb-live-decline' }, BUTTON);
    help.endLive = make('button', { type: 'button', id: 'tmpnb-live-end' }, BUTTON);
    liveButtons.append(help.accept, help.decline, help.endLive);
    help.live.append(help.liveText, liveButtons);
    help.append(row, help.status, help.live, help.handForm, help.nameForm);
    document.body.appendChild(help);
    help.accept.addEventListener('click', function () { send('live', 'POST', { answer: 'accept' }); });
    help.decline.addEventListener('click', function () { send('live', 'POST', { answer: 'decline' }); });
    help.endLive.addEventListener('click', function () { send('live', 'POST', { answer: 'end' }); });

    help.hand.addEventListener('click', function () {
      if (help.raised) {
        send('hand', 'DELETE', null);
      } else {
        help.nameForm.hidden = true;
        help.handForm.hidden = false;
        help.text.focus();
      }
    });
    help.handForm.addEventListener('submit', function (event) {
      event.preventDefault();
      send('hand', 'POST', { text: help.text.value });
    });
    help.nameLink.addEventListener('click', function () {
      help.handForm.hidden = true;
      help.nameForm.hidden = false;
      help.name.focus();
    });
    help.nameForm.addEventListener('submit', function (event) {
      event.preventDefault();
      send('name', 'POST', { name: help.name.value });
    });
  }

  // What the service says of the hand and the name, shown (as text only).
  function showHelp(state, words) {
    if (!help) {
      makeHelp(words);
    }
    help.words = words;
    help.raised = state.hand.raised;
    help.hand.textContent = state.hand.raised ? words.lower : words.raise;
    help.hand.setAttribute('aria-pressed', String(state.hand.raised));
    help.nameLink.textContent = state.name || words.name;
    help.nameLink.setAttribute('aria-label', state.name ? words.name + ': ' + state.name : words.name);
    var status = state.hand.raised ? words.raised : '';
    if (help.status.textContent !== status) {
      help.status.textContent = status;
    }
    if (document.activeElement !== help.name) {
      help.name.value = state.name;
    }
    showLive(state.live, words);
  }

  // A helper asking to join live, or there: said as text, with its buttons.
  function showLive(live, words) {
    help.live.hidden = !live;
    if (!live) {
      return;
    }
    if (help.liveText.textContent !== live.message) {
      help.liveText.textContent = live.message;
    }
    help.accept.textContent = words.accept;
    help.decline.textContent = words.decline;
    help.endLive.textContent = words.end;
    help.accept.hidden = help.decline.hidden = live.state !== 'asked';
    help.endLive.hidden = live.state !== 'here';
  }

  function send(what, method, body) {
    var options = { method: method, credentials: 'omit', headers: headers(), cache: 'no-store' };
    if (body) {
      options.body = JSON.stringify(body);
    }
    fetch(api + what, options)
      .then(function (response) {
        return response.json().then(function (answer) { return { ok: response.ok, answer: answer }; });
      })
      .then(function (result) {
        if (!result.ok) {
          help.status.textContent = result.answer.error || help.words.failed;
          return;
        }
        help.handForm.hidden = true;
        help.nameForm.hidden = true;
        showHelp(result.answer, help.words);
      })
      .catch(function () {
        help.status.textContent = help.words.failed;
      });
  }

  function ask() {
    fetch(url, { credentials: 'omit', headers: headers(), cache: 'no-store' })
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
        if (answer.words) {
          showHelp(answer, answer.words);
        }
        if (answer.arrived) {
          arrive(answer.arrived, answer.dismiss);
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
