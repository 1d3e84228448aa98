"""The run report: every section filled from a real run, every image a real PNG (inlined and on
disk), text escaped, stages that did not run say so, broken input named."""

import base64
import struct
from html.parser import HTMLParser

import numpy as np
import pytest

from spikeflow.errors import DataError, FormatError
from spikeflow.report import REPORT_NAME, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FULL_SECTIONS = ["overview", "data", "model", "train", "evaluate", "activity", "layers", "early_exit", "export-spinnaker2",
                 "export-rram-lsm", "pipeline"]


class Page(HTMLParser):
    """What a reader of the page gets: sections with their text, images, paragraph classes, links."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.images: list[dict] = []
        self.paragraphs: list[tuple[str, str]] = []  # (class, section)
        self.tags: list[str] = []
        self.urls: list[str] = []
        self._section = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._section = attrs["id"]
            self.sections[self._section] = []
        elif tag == "img":
            self.images.append({**attrs, "section": self._section})
        elif tag == "p":
            self.paragraphs.append((attrs.get("class", ""), self._section))
        for key in ("src", "href"):
            if key in attrs:
                self.urls.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._section is not None and data.strip():
            self.sections[self._section].append(data.strip())

    def text(self, section: str) -> str:
        return " ".join(self.sections[section])


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


@pytest.fixture(scope="module")
def full_report(real_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = write_report(real_run, out, strict=True)
    return path, path.read_text(encoding="utf-8")


def test_every_section_is_filled_and_every_image_is_a_real_png(full_report):
    path, text = full_report
    assert path.name == REPORT_NAME and path.is_file()
    page = Page(text)
    assert list(page.sections) == FULL_SECTIONS
    assert not [p for p in page.paragraphs if p[0] in ("skipped", "problem")], page.paragraphs
    with_images = {img["section"] for img in page.images}
    assert with_images == set(FULL_SECTIONS) - {"model", "pipeline"}  # the model is a table, the pipeline text
    on_disk = {p.name: p.read_bytes() for p in path.parent.glob("*.png")}
    inlined = []
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img["alt"]
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        width, height = png_size(data)
        assert width >= 300 and height >= 150 and len(data) > 8000, (img["alt"], width, height, len(data))
        inlined.append(data)
    assert len(on_disk) == len(page.images)  # one file beside the page per figure, and the same bytes
    assert sorted(on_disk.values()) == sorted(inlined)
    assert {"data-examples.png", "activity-raster.png", "activity-v-lif1.png", "train-curves.png", "evaluate-backends.png",
            "early_exit-curve.png", "layers-activity.png", "export-spinnaker2-pe-map.png", "export-spinnaker2-routing.png",
            "export-spinnaker2-sram.png", "export-rram-lsm-conductances.png", "overview-stages.png"} <= set(on_disk)
    # self-contained: no script, no external resource, only in-page links
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls)
    assert "http://" not in text and "https://" not in text and "url(" not in text


def test_sections_show_the_runs_numbers(full_report, real_run):
    _, text = full_report
    page = Page(text)
    overview = page.text("overview")
    assert "cached" in overview and "24.60" in overview  # early_exit came from the cache; total of the stage times
    assert "digit-saccades" in page.text("data") and "(34, 34, 2)" in page.text("data")
    assert "lif1" in page.text("model") and "Conv2d" in page.text("model")
    acc = real_run["evaluate"]["backends"]["numba-event"]["accuracy"]
    assert f"{100 * acc:.2f}" in page.text("evaluate") and "n/a" in page.text("evaluate")  # torch gave no event count
    ex = real_run["early_exit"]
    for value in (ex["chosen"]["accuracy"], ex["test"]["accuracy"], ex["full"]["accuracy"]):
        assert f"{100 * value:.2f}" in page.text("early_exit")
    assert f"test split ({ex['test']['samples']} samples)" in page.text("early_exit")
    s2 = real_run["exports"]["spinnaker2"]["report"]
    assert f"{s2['pes']}" in page.text("export-spinnaker2") and "weight quantisation per layer" in page.text("export-spinnaker2")
    assert "robustness" in page.text("export-rram-lsm") and "87.00" in page.text("export-rram-lsm")
    assert "robustness" not in page.text("export-spinnaker2")


def test_text_is_escaped(full_report):
    _, text = full_report
    assert "report-test &lt;run&gt; &amp; co" in text and "<run>" not in text
    assert "# &lt;not a tag&gt; &amp; &quot;quoted&quot;" in text and "<not a tag>" not in text  # the pipeline file
    assert "drift 1 day &lt;b&gt;" in text and "<b>" not in text  # a robustness case name


def test_the_routes_drawn_are_the_exports_placed_cores(real_run):
    from spikeflow.backends import load_export

    prog = load_export(real_run["exports"]["spinnaker2"]["path"])
    placed = {(pe["chip"], pe["core"]) for pe in prog.report.sram}
    assert set(prog.routes) == {pe["pe"] for pe in prog.report.sram}
    reached = {d for dests in prog.routes.values() for d in dests}
    assert reached and reached <= placed
    by_population = {pe["pe"]: pe["population"] for pe in prog.report.sram}
    # the readout sends nowhere, the input reaches the first convolution's PEs
    assert all(not prog.routes[pe] for pe, pop in by_population.items() if pop == "readout")
    assert all(prog.routes[pe] for pe, pop in by_population.items() if pop == "input")


def test_a_partial_run_says_what_did_not_run(tmp_path):
    run = {"name": "partial", "seconds": {"data": 1.5, "model": 0.2}, "cached": ["data"],
           "data": {"dataset": "digit-saccades", "sensor_size": (34, 34, 2), "bins": 8, "n_train": 10, "n_test": 5}}
    page = Page(write_report(run, tmp_path, strict=True).read_text(encoding="utf-8"))
    assert list(page.sections) == ["overview", "data", "model", "train", "evaluate", "activity", "layers", "early_exit", "export",
                                   "pipeline"]
    skipped = {section for cls, section in page.paragraphs if cls == "skipped"}
    assert skipped == {"model", "train", "evaluate", "activity", "layers", "early_exit", "export"}
    for section in skipped:
        assert "did not run" in page.text(section)
    assert "No input samples" in page.text("data") and "No pipeline file" in page.text("pipeline")
    assert [img["section"] for img in page.images] == ["overview"]  # only the stage timings: never an empty figure
    assert "not run" in page.text("overview") and "cached" in page.text("overview")
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["overview-stages.png"]


def test_only_the_name_gives_a_page_without_figures(tmp_path):
    page = Page(write_report({"name": "empty"}, tmp_path, strict=True).read_text(encoding="utf-8"))
    assert page.images == [] and not list(tmp_path.glob("*.png"))
    assert "No stage timings" in page.text("overview")


def test_a_stage_that_ran_without_results_says_so(tmp_path):
    run = {"name": "thin", "train": {"history": {"loss": []}, "strategy": "bptt"},
           "evaluate": {"backends": {"torch": {"accuracy": 0.5}}},
           "early_exit": {"chosen": {"threshold": 0.9, "accuracy": 0.8, "mean_steps": 4.0}, "full_steps": 8}}
    page = Page(write_report(run, tmp_path, strict=True).read_text(encoding="utf-8"))
    assert "no epoch finished" in page.text("train")
    assert "No neurons were recorded" in page.text("activity") and "No per-layer activity" in page.text("layers")
    assert "no accuracy/latency curve" in page.text("early_exit") and "50.0" in page.text("early_exit")
    assert [img["section"] for img in page.images] == ["evaluate"]


def test_a_rerun_replaces_the_page_and_removes_figures_it_no_longer_draws(real_run, tmp_path):
    write_report(real_run, tmp_path, strict=True)
    (tmp_path / "notes.png").write_bytes(PNG_MAGIC)  # not ours: kept
    assert (tmp_path / "export-rram-lsm-conductances.png").exists()
    smaller = {k: v for k, v in real_run.items() if k not in ("exports", "train")}
    page = write_report(smaller, tmp_path, strict=True).read_text(encoding="utf-8")
    left = {p.name for p in tmp_path.iterdir()}
    assert "export-rram-lsm-conductances.png" not in left and "train-curves.png" not in left
    assert {"notes.png", "data-examples.png", REPORT_NAME} <= left
    assert not [n for n in left if n.endswith(".tmp")]  # atomic writes leave no temporaries
    assert "did not run" in Page(page).text("train")


def test_broken_runs_are_named(tmp_path):
    with pytest.raises(DataError, match="must be a dict"):
        write_report([("name", "x")], tmp_path)
    with pytest.raises(DataError, match=r"run\['name'\]"):
        write_report({"name": ""}, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        write_report({"name": "x"}, tmp_path / "file")
    with pytest.raises(DataError, match=r"run\['evaluate'\]\['backends'\]: expected Mapping, got list"):
        write_report({"name": "x", "evaluate": {"backends": ["torch"]}}, tmp_path / "a", strict=True)
    with pytest.raises(DataError, match=r"run\['cached'\]: expected list or tuple, got str"):
        write_report({"name": "x", "cached": "train"}, tmp_path / "d", strict=True)
    with pytest.raises(DataError, match=r"run\['data'\]\['examples'\]\[0\]"):
        write_report({"name": "x", "data": {"sensor_size": (4, 4, 2), "examples": [np.zeros(3)]}}, tmp_path / "b", strict=True)
    with pytest.raises(DataError, match="'sensor_size' is missing"):
        ev = np.zeros(1, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
        write_report({"name": "x", "data": {"examples": [(ev, 0)]}}, tmp_path / "c", strict=True)


def test_without_strict_a_broken_section_says_why_and_the_rest_is_kept(real_run, tmp_path):
    run = dict(real_run, evaluate={"backends": {"torch": {"accuracy": "high"}}},
               exports={"spinnaker2": {"path": str(tmp_path / "gone"), "report": {}}})
    with pytest.warns(UserWarning, match="could not convert|gone"):
        path = write_report(run, tmp_path / "out")
    page = Page(path.read_text(encoding="utf-8"))
    problems = {section for cls, section in page.paragraphs if cls == "problem"}
    assert problems == {"evaluate", "export-spinnaker2"}
    assert "no such folder" in page.text("export-spinnaker2")
    assert {"data", "train", "early_exit"} <= {img["section"] for img in page.images}
    with pytest.raises(FormatError, match="no such folder"):
        write_report(dict(real_run, exports=run["exports"]), tmp_path / "strict", strict=True)


def test_one_dimensional_sensors_show_event_rasters(tmp_path):
    from spikeflow.datasets.events import make_events

    rng = np.random.default_rng(0)
    samples = [(make_events(rng.integers(0, 64, 300), np.zeros(300, int), np.sort(rng.integers(0, 500_000, 300)), np.ones(300, int)), k)
                for k in range(2)]
    run = {"name": "audio", "data": {"dataset": "spoken-digits", "sensor_size": (64, 1, 1), "classes": ["zero", "one"], "examples": samples}}
    page = Page(write_report(run, tmp_path, strict=True).read_text(encoding="utf-8"))
    assert [img["section"] for img in page.images] == ["data"] and "event rasters" in page.images[0]["alt"]
    width, height = png_size(base64.b64decode(page.images[0]["src"].split(",", 1)[1]))
    assert width >= 600 and height >= 300


def test_a_target_without_drawings_shows_its_report_numbers(real_run, tmp_path):
    run = {"name": "other", "exports": {"loihi-like": {"path": real_run["exports"]["rram-lsm"]["path"],
                                                       "report": {"cores": 12, "energy_uj": 3.5, "ok": True, "nested": {"a": 1}},
                                                       "robustness": {"rows": [{"case": "fixed point", "accuracy": 0.5}]}}}}
    page = Page(write_report(run, tmp_path, strict=True).read_text(encoding="utf-8"))
    text = page.text("export-loihi-like")
    assert "cores 12" in text and "energy_uj 3.5" in text and "nested" not in text
    assert "draws no figures for target 'loihi-like'" in text and "fixed point 50.00" in text
    assert page.images == []


def test_nothing_to_draw_gives_a_note_not_an_empty_figure(tmp_path):
    v = np.linspace(0.0, 0.8, 20)[:, None] * np.ones((1, 3))
    run = {"name": "silent", "evaluate": {"backends": {"torch": {}},
                                          "record": {"dt": 1e-3, "spikes": {"lif1": np.zeros((20, 3))}, "v": {"lif1": v},
                                                     "threshold": {"lif1": 1.0}, "label": 3}}}
    page = Page(write_report(run, tmp_path, strict=True).read_text(encoding="utf-8"))
    assert "reported no numbers" in page.text("evaluate") and "n/a" in page.text("evaluate")
    assert "did not spike on this sample" in page.text("activity")
    assert [img["alt"] for img in page.images] == ["membrane potential of lif1 (dashed: threshold; dots: spikes)"]


def test_an_egru_export_on_many_chips_is_drawn(tmp_path):
    """The FP32 EGRU export (value events) placed across several chips: PE map per chip and routing."""
    import spikeflow as sf
    from tests.backends.spinnaker2.test_egru import _graph, _layer

    rng = np.random.default_rng(0)
    graph = _graph(_layer(rng, 5, 12), _layer(rng, 12, 10))
    rep = sf.export(graph, target="spinnaker2", path=tmp_path / "s2", chip={"max_atoms_per_core": 7, "app_pes_per_chip": 3, "chips": 9})
    assert rep.chips > 1
    run = {"name": "egru", "model": {"graph": graph, "source": "test:egru"},
           "exports": {"spinnaker2": {"path": str(tmp_path / "s2"), "report": rep.to_dict()}}}
    page = Page(write_report(run, tmp_path / "report", strict=True).read_text(encoding="utf-8"))
    assert [img["alt"].split(":")[0] for img in page.images] == ["PE map", "SRAM per PE by part, against the data budget",
                                                                  "routing table entries per chip, and which PEs receive each PE's packets"]
    assert f"{rep.pes}" in page.text("export-spinnaker2") and "weight quantisation" not in page.text("export-spinnaker2")
    assert "EGRU" in page.text("model")
