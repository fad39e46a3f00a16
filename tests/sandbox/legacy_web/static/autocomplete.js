/* Customer autocomplete - Order Entry 2.3
 * Listens to key presses in the customer field; after two letters asks the
 * server (/customers/suggest, one "number|name" per line) and shows a list
 * under the field. Click an entry, or use the arrow keys and Enter, to choose.
 * Choosing fills the hidden customer number; typing again clears it.
 */
var ac_box = null;
var ac_items = [];
var ac_index = -1;
var ac_seq = 0;
var ac_input = null;
var ac_number = null;

function ac_keyup(e, input, numberId) {
  var k = e.keyCode;
  if (k == 9 || k == 13 || k == 16 || k == 27 || k == 38 || k == 40) return;
  if (input.value == input.ac_last) return;
  input.ac_last = input.value;
  document.getElementById(numberId).value = '';
  ac_lookup(input, numberId);
}

function ac_keydown(e, input, numberId) {
  var k = e.keyCode;
  if (ac_box == null || ac_box.style.display == 'none') return true;
  if (k == 40 || k == 38) {
    if (ac_items.length == 0) return false;
    ac_index = k == 40 ? Math.min(ac_index + 1, ac_items.length - 1) : Math.max(ac_index - 1, 0);
    ac_paint();
    return false;
  }
  if (k == 13) {
    if (ac_index >= 0) ac_pick(ac_index);
    return false;
  }
  if (k == 27) { ac_hide(); return false; }
  return true;
}

function ac_lookup(input, numberId) {
  var q = input.value;
  var seq = ++ac_seq;
  ac_input = input;
  ac_number = document.getElementById(numberId);
  if (q.length < 2) { ac_hide(); return; }
  ac_render([], 'Searching...');
  var xhr = new XMLHttpRequest();
  xhr.open('GET', '/customers/suggest?q=' + encodeURIComponent(q), true);
  xhr.onreadystatechange = function () {
    if (xhr.readyState != 4 || seq != ac_seq) return;
    if (xhr.status != 200) { ac_render([], 'Error ' + xhr.status); return; }
    var items = [];
    var lines = xhr.responseText.split('\n');
    for (var i = 0; i < lines.length; i++) {
      var bar = lines[i].indexOf('|');
      if (bar > 0) items.push([lines[i].substring(0, bar), lines[i].substring(bar + 1)]);
    }
    ac_render(items, items.length ? '' : 'No customer found');
  };
  xhr.send(null);
}

function ac_render(items, note) {
  if (ac_box == null) {
    ac_box = document.createElement('div');
    ac_box.className = 'ac-list';
    ac_box.style.position = 'absolute';
    ac_box.style.background = '#FFFFE0';
    ac_box.style.border = '1px solid #000000';
    ac_box.style.fontSize = '12px';
    ac_box.style.zIndex = 10;
    document.body.appendChild(ac_box);
  }
  var x = 0, y = ac_input.offsetHeight, el = ac_input;
  while (el) { x += el.offsetLeft; y += el.offsetTop; el = el.offsetParent; }
  ac_box.style.left = x + 'px';
  ac_box.style.top = y + 'px';
  ac_box.style.width = ac_input.offsetWidth + 'px';
  ac_box.innerHTML = '';
  ac_items = items;
  ac_index = -1;
  if (note) {
    var n = document.createElement('div');
    n.className = 'ac-note';
    n.style.color = '#666666';
    n.appendChild(document.createTextNode(note));
    ac_box.appendChild(n);
  }
  for (var i = 0; i < items.length; i++) {
    var d = document.createElement('div');
    d.className = 'ac-item';
    d.style.cursor = 'pointer';
    d.style.padding = '1px 3px';
    d.appendChild(document.createTextNode(items[i][1]));
    d.onmousedown = (function (j) { return function () { ac_pick(j); return false; }; })(i);
    ac_box.appendChild(d);
  }
  ac_box.style.display = 'block';
}

function ac_paint() {
  var rows = ac_box.getElementsByTagName('div');
  for (var i = 0, j = 0; i < rows.length; i++) {
    if (rows[i].className != 'ac-item') continue;
    rows[i].style.background = j == ac_index ? '#336699' : '';
    rows[i].style.color = j == ac_index ? '#FFFFFF' : '';
    j++;
  }
}

function ac_pick(i) {
  ac_input.value = ac_items[i][1];
  ac_input.ac_last = ac_input.value;
  ac_number.value = ac_items[i][0];
  ac_hide();
}

function ac_hide() {
  ac_seq++;
  if (ac_box != null) ac_box.style.display = 'none';
}

function ac_hide_later() {
  var seq = ac_seq;
  window.setTimeout(function () { if (seq == ac_seq) ac_hide(); }, 200);
}
