"""The HTML options form and its form-data -> user_options conversion.

Bounds come from request.bounds_for, the same function the server-side validation uses,
so the form never offers what the server would refuse (and never more than the host has).
Everything user- or admin-written is HTML-escaped.
"""

import json
from html import escape

from .request import OPTION_KEYS, bounds_for
from .sizes import counted, format_binary, format_gib

MEM_STEP = 64 * 1024**2  # memory sliders move in 64 MiB steps
CPU_STEP = 0.1

_SCRIPT = """
<script>
(function () {
  var form = document.currentScript.parentNode;
  var bounds = JSON.parse(form.querySelector('#pss-bounds').textContent);
  function fmtBytes(b) { return (b / 1073741824).toFixed(2).replace(/\\.?0+$/, '') + ' GiB'; }
  function show(input) {
    var out = form.querySelector('output[for="' + input.id + '"]');
    if (out) out.textContent = input.dataset.kind === 'mem' ? fmtBytes(+input.value) : input.value;
  }
  function setMax(name, max, toMax, min) {
    var input = form.querySelector('input[name="' + name + '"]');
    if (!input) return;
    if (min !== undefined) input.min = min;
    input.max = max;
    if (toMax || +input.value > max) input.value = max;
    if (+input.value < +input.min) input.value = input.min;
    show(input);
  }
  function apply() {
    var b = bounds[form.querySelector('select[name="resource_profile"]').value];
    setMax('cpu_limit', b.cpu_limit, true);
    setMax('mem_limit', b.mem_limit, true);
    setMax('cpu_guarantee', Math.min(b.cpu_guarantee, +form.querySelector('input[name="cpu_limit"]').value),
           false, b.cpu_guarantee_min);
    setMax('mem_guarantee', Math.min(b.mem_guarantee, +form.querySelector('input[name="mem_limit"]').value),
           false, b.mem_guarantee_min);
    setMax('gpus', b.gpus, true);
    var gpuRow = form.querySelector('#pss-gpu-row');
    if (gpuRow) gpuRow.style.display = b.gpus > 0 ? '' : 'none';
  }
  form.querySelector('select[name="resource_profile"]').addEventListener('change', apply);
  form.querySelectorAll('input[type="range"]').forEach(function (input) {
    input.addEventListener('input', function () {
      show(input);
      if (input.name === 'cpu_limit' || input.name === 'mem_limit') {
        var b = bounds[form.querySelector('select[name="resource_profile"]').value];
        setMax('cpu_guarantee', Math.min(b.cpu_guarantee, +form.querySelector('input[name="cpu_limit"]').value));
        setMax('mem_guarantee', Math.min(b.mem_guarantee, +form.querySelector('input[name="mem_limit"]').value));
      }
    });
  });
  apply();
})();
</script>
"""


def _round_down(value, step):
    return (value // step) * step


def _slider(name, label, kind, value, low, high, step, fmt):
    return (
        f'<div class="form-group">'
        f'<label for="pss-{name}">{escape(label)}: <output for="pss-{name}">{escape(fmt(value))}</output></label>'
        f'<input type="range" class="form-range" id="pss-{name}" name="{name}" data-kind="{kind}"'
        f' min="{low}" max="{high}" step="{step}" value="{value}">'
        f'</div>'
    )


def _opt_out_text(image):
    """An image profile's opt-outs of the default-deny container, named next to it (escaped)."""
    if not image.opt_outs:
        return ""
    return escape(" [less isolated: " + "; ".join(image.opt_outs) + "]")


def _image_field(profiles, user, course):
    """The image choice; none for a launch from a course with one image (profilespawner.courses):
    the form then names that image and posts no image_profile, so the spawn takes it."""
    name = user.allowed_images[0]
    if len(user.allowed_images) == 1 and course is not None and course in profiles.images[name].courses:
        return ('<p class="pss-course-image" id="pss-image_profile-fixed">Image for your course '
                f'{escape(course)}: {escape(name)} — {escape(profiles.images[name].description)}'
                f'{_opt_out_text(profiles.images[name])}</p>')
    img_options = "".join(
        f'<option value="{escape(name)}"{" selected" if i == 0 else ""}>'
        f'{escape(name)} — {escape(profiles.images[name].description)}{_opt_out_text(profiles.images[name])}</option>'
        for i, name in enumerate(user.allowed_images)
    )
    return ('<div class="form-group"><label for="pss-image_profile">Image</label>'
            f'<select class="form-control" id="pss-image_profile" name="image_profile" required>{img_options}</select></div>')


def render_form(profiles, user, host, free_cpu, free_mem, free_gpu_count=None, course=None):
    """HTML for Spawner.options_form: first allowed profile and image preselected. ``course``:
    the LMS course the user launched from (``user`` is then already narrowed to its images)."""
    bounds = {name: bounds_for(profiles, user, name, host) for name in user.allowed_resources}
    js_bounds = {
        name: {
            "cpu_limit": b.cpu_limit,
            "mem_limit": _round_down(b.mem_limit, MEM_STEP) or b.mem_limit,
            "cpu_guarantee": b.cpu_guarantee,
            "mem_guarantee": max(_round_down(b.mem_guarantee, MEM_STEP), b.mem_guarantee_min),
            "cpu_guarantee_min": b.cpu_guarantee_min,
            "mem_guarantee_min": b.mem_guarantee_min,
            "gpus": b.gpus,
        }
        for name, b in bounds.items()
    }
    first = user.allowed_resources[0]
    fb = js_bounds[first]
    res_options = "".join(
        f'<option value="{escape(name)}"{" selected" if i == 0 else ""}>'
        f'{escape(name)} — {escape(profiles.resources[name].description)}</option>'
        for i, name in enumerate(user.allowed_resources)
    )
    gib = format_gib  # the same text as the script's fmtBytes
    cores = lambda v: f"{float(v):g}"  # noqa: E731
    free_text = f"{counted(free_cpu, 'CPU')} and {format_binary(free_mem)} memory can still be guaranteed"
    if free_gpu_count is not None:
        free_text += f"; {counted(free_gpu_count, 'GPU')} free"
    any_gpus = any(b.gpus for b in bounds.values())
    gpu_row = ""
    if any_gpus:
        gpu_row = ('<div id="pss-gpu-row">'
                   + _slider("gpus", "GPUs", "count", fb["gpus"], 0, fb["gpus"], 1, str) + "</div>")
    # JSON inside <script type=application/json>: escape "<" so no "</script>" can break out
    bounds_json = json.dumps(js_bounds).replace("<", "\\u003c")
    return (
        '<div class="profilespawner-form">'
        f'<p class="pss-free">Free on this machine now: {free_text}.</p>'
        '<div class="form-group"><label for="pss-resource_profile">Resource profile</label>'
        f'<select class="form-control" id="pss-resource_profile" name="resource_profile" required autofocus>{res_options}</select></div>'
        + _image_field(profiles, user, course)
        + _slider("cpu_limit", "CPU limit (cores)", "cpu", fb["cpu_limit"], CPU_STEP, fb["cpu_limit"], CPU_STEP, cores)
        + _slider("mem_limit", "Memory limit", "mem", fb["mem_limit"], MEM_STEP, fb["mem_limit"], MEM_STEP, gib)
        + _slider("cpu_guarantee", "Guaranteed CPU (cores)", "cpu", fb["cpu_guarantee_min"],
                  fb["cpu_guarantee_min"], fb["cpu_guarantee"], CPU_STEP, cores)
        + _slider("mem_guarantee", "Guaranteed memory", "mem", fb["mem_guarantee_min"],
                  fb["mem_guarantee_min"], fb["mem_guarantee"], MEM_STEP, gib)
        + gpu_row
        + f'<script type="application/json" id="pss-bounds">{bounds_json}</script>'
        + _SCRIPT
        + "</div>"
    )


def options_from_form(formdata):
    """Form data (dict of lists of strings) -> user_options: one string per known field.
    Unknown fields (e.g. _xsrf) are dropped; values stay strings and are validated in start()."""
    return {key: values[0] for key, values in formdata.items() if key in OPTION_KEYS and values}
