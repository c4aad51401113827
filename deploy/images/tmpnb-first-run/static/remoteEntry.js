/* tmpnb: a cell run before JupyterLab has started the notebook's kernel waits
   for that kernel (issue 32). JupyterLab shows a notebook's cells before it
   asks the server for the notebook's kernel (it first lists and makes a
   checkpoint); a cell run in that gap finds "no kernel", and JupyterLab's own
   executor then asks which kernel to start ("Select kernel for ...") or
   starts a second session. Either way the kernel waiting in the server
   (tmpnb_waiting_kernel.py), which the notebook's own session had taken, is
   shut down for a new one that the participant waits for. This executor
   replaces JupyterLab's (its package.json disables that one) and runs the
   cell once the notebook's first session is there; a notebook whose kernel
   was shut down later is ready already and runs as JupyterLab does.
   A JupyterLab federated extension written by hand: the notebook package
   comes from JupyterLab's own shared modules, nothing is bundled. */
(function () {
  var shared = null;

  function sharedModule(name) {
    var versions = shared[name];
    var entry = versions[Object.keys(versions)[0]];
    return Promise.resolve(entry.get()).then(function (factory) {
      return factory();
    });
  }

  function cellExecutor(notebook) {
    return {
      id: 'tmpnb-first-run:cell-executor',
      description: "Runs a cell once the notebook's first kernel is there.",
      autoStart: true,
      provides: notebook.INotebookCellExecutor,
      activate: function () {
        return Object.freeze({
          runCell: function (options) {
            var context = options.sessionContext;
            if (options.cell.model.type !== 'code' || !context || context.isReady || !context.hasNoKernel) {
              return notebook.runCell(options);
            }
            options.cell.setPrompt('*'); // queued, as a cell waiting for a busy kernel shows
            return context.ready.then(function () {
              return notebook.runCell(options);
            });
          }
        });
      }
    };
  }

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB['tmpnb-first-run'] = {
    init: function (scope) {
      shared = scope;
    },
    get: function () {
      return sharedModule('@jupyterlab/notebook').then(function (notebook) {
        var plugin = cellExecutor(notebook);
        return function () {
          return { __esModule: true, default: plugin };
        };
      });
    }
  };
})();
