if (!window.__daCiteHandler) {
  window.__daCiteHandler = true;
  document.addEventListener('click', function (ev) {
    var link = ev.target && ev.target.closest ? ev.target.closest('a.da-cite') : null;
    if (!link) return;
    var id = (link.getAttribute('href') || '').replace(/^#/, '');
    var target = id ? document.getElementById(id) : null;
    if (!target) return;
    ev.preventDefault();
    target.open = true;
    target.classList.add('da-flash');
    setTimeout(function () { target.classList.remove('da-flash'); }, 1600);
    target.scrollIntoView({block: 'nearest', behavior: 'smooth'});
  }, true);
}
