// A page that answers a form (a run started, a token made) stands for another
// address: show that one, so reload does not post again, and back and a copied
// link work. The server names it in <body data-page-url>.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-page-url");
  if (url && window.location.pathname + window.location.search !== url) {
    window.history.replaceState(null, "", url);
  }
})();
