import re
from html.parser import HTMLParser

from profilespawner.form import options_from_form, render_form
from profilespawner.profiles import effective_profile, parse_profiles

from .conftest import G, sample_data


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs, self.options, self.tags = {}, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "input":
            self.inputs[a["name"]] = a
        if tag == "option":
            self.options.append(a)


def parse(html):
    c = Collect()
    c.feed(html)
    return c


def test_preselects_first_allowed_and_bounds(profiles, default_user, host):
    html = render_form(profiles, default_user, host, 1.5, 20 * G)
    c = parse(html)
    assert [o["value"] for o in c.options] == ["Tiny", "Small", "SingleUser"]
    selected = [o["value"] for o in c.options if "selected" in o]
    assert selected == ["Tiny", "SingleUser"]
    assert c.inputs["cpu_limit"]["max"] == "1.0" and c.inputs["cpu_limit"]["value"] == "1.0"
    assert int(c.inputs["mem_limit"]["max"]) == 2 * G
    assert c.inputs["cpu_guarantee"]["max"] == "0.5" and float(c.inputs["cpu_guarantee"]["value"]) == 0
    assert int(c.inputs["mem_guarantee"]["max"]) == G
    assert "gpus" not in c.inputs
    assert "1.5 CPUs and 20 GiB memory can still be guaranteed" in html


def test_guarantee_floor_is_the_sliders_minimum_and_default(profiles, default_user, host):
    from dataclasses import replace
    tiny = replace(profiles.resources["Tiny"], cpu_guarantee=0.2, mem_guarantee=128 * 1024 ** 2)
    floored = replace(profiles, resources={**profiles.resources, "Tiny": tiny})
    c = parse(render_form(floored, default_user, host, 1.5, 20 * G))
    assert float(c.inputs["cpu_guarantee"]["min"]) == 0.2 == float(c.inputs["cpu_guarantee"]["value"])
    assert int(c.inputs["mem_guarantee"]["min"]) == 128 * 1024 ** 2 == int(c.inputs["mem_guarantee"]["value"])


def test_bounds_for_every_profile_capped_at_host(profiles, host):
    alice = effective_profile(profiles, "alice", [])
    html = render_form(profiles, alice, host, 2, 24 * G)
    blob = re.search(r'id="pss-bounds">(.*?)</script>', html).group(1)
    assert '"Extreme": {"cpu_limit": 2.0' in blob  # 36 cores capped at the host's 2


def test_gpu_slider_when_allowed(profiles, host):
    gus = effective_profile(profiles, "gus", ["gpu-users"])
    c = parse(render_form(profiles, gus, host, 2, G, free_gpu_count=3))
    assert c.inputs["gpus"]["max"] == "0"  # first allowed is Tiny (0 GPUs); JS raises it for GPU1
    assert "3 GPUs free" in render_form(profiles, gus, host, 2, G, free_gpu_count=3)
    assert "1 GPU free" in render_form(profiles, gus, host, 2, G, free_gpu_count=1)


def test_escapes_everything():
    data = sample_data()
    evil = '<script>alert("x")</script>'
    data["resource_profiles"]["Tiny"]["description"] = evil
    data["resource_profiles"]['"><img src=x>'] = {"cpu_limit": 1, "mem_limit": "1G"}
    data["resource_profiles"]["</script><b>"] = {"cpu_limit": 1, "mem_limit": "1G"}
    data["user_profiles"]["default"]["allowed_resources"] = ["Tiny", '"><img src=x>', "</script><b>"]
    p = parse_profiles(data)
    from profilespawner.capacity import HostCapacity
    html = render_form(p, effective_profile(p, "x", []), HostCapacity(2, 4 * G), 1, G)
    assert evil not in html and "<img" not in html and "</script><b>" not in html
    assert "&lt;script&gt;" in html
    c = parse(html)
    assert [t for t in c.tags if t in ("img", "b")] == []
    assert c.tags.count("script") == 2  # the bounds JSON and our own code, nothing injected


def test_options_from_form():
    form = {"resource_profile": ["Small"], "cpu_limit": ["1.5"], "_xsrf": ["t"], "image_profile": ["SingleUser"]}
    assert options_from_form(form) == {"resource_profile": "Small", "cpu_limit": "1.5", "image_profile": "SingleUser"}


def visible_text(html):
    """The form's text as a browser shows it (tags and the script's source left out)."""
    html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_one_unit_system_and_singular_counts(profiles, default_user, host):
    data = sample_data()
    del data["resource_profiles"]["Tiny"]["description"]  # the default description
    plain = parse_profiles(data)
    text = visible_text(render_form(plain, default_user, host, 1, int(21.19 * G)))
    assert "Tiny — 1 CPU, 2 GiB RAM" in text
    assert "Free on this machine now: 1 CPU and 21.19 GiB memory can still be guaranteed." in text
    assert "1 CPUs" not in text
    assert not re.search(r"\d(GB|G|B)\b|\bGB\b", text), text  # only KiB/MiB/GiB/TiB, as sizes.py counts
    assert "Memory limit: 2 GiB" in text  # the slider's label says what the script will say
