import pytest

from diffueraser.errors import InputError
from diffueraser.settings import Settings


def test_defaults_are_the_released_ones():
    s = Settings()
    assert (s.steps, s.clip_length, s.overlap, s.mask_dilation, s.max_size) == (2, 22, 5, 8, 960)
    assert (s.prior, s.prior_injection, s.max_seconds, s.prior_scale, s.raft_iters) == ("propainter", "released", 10.0, 0.6, 20)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"steps": 3}, "steps must be one of 2, 4, 8, 16"),
        ({"clip_length": 0}, "clip_length must be"),
        ({"clip_length": 8, "clip_overlap": 8}, "clip_overlap must be from 0 to clip_length - 1 = 7"),
        ({"prior": "magic"}, "prior must be one of propainter, propagation, none"),
        ({"prior_injection": "x"}, "prior_injection must be one of released, ddim"),
        ({"mask_dilation": -1}, "mask_dilation"),
        ({"max_size": 10}, "max_size must be an integer from 64 to 4096"),
        ({"max_seconds": 0}, "max_seconds must be positive"),
        ({"seed": -5}, "seed must be a non-negative integer"),
        ({"device": "tpu"}, "device must be"),
        ({"dtype": "int8"}, "dtype must be one of"),
    ],
)
def test_each_bad_value_is_refused_with_a_message_naming_it(change, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(")):
        Settings(**change)


def test_overlap_defaults_to_a_quarter_of_the_clip_and_can_be_set():
    assert Settings(clip_length=16).overlap == 4
    assert Settings(clip_length=16, clip_overlap=2).overlap == 2


def test_from_dict_refuses_unknown_names_and_lists_known_ones():
    with pytest.raises(InputError, match="unknown setting.*stepz.*known: .*steps"):
        Settings.from_dict({"stepz": 4})
    assert Settings.from_dict({"steps": 4}).steps == 4


def test_replace_validates_again():
    with pytest.raises(InputError):
        Settings().replace(steps=5)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"steps": "4"}, "steps must be one of 2, 4, 8, 16, got '4' (str)"),
        ({"steps": True}, "steps must be one of 2, 4, 8, 16, got True (bool)"),
        ({"clip_length": 8.0}, "clip_length must be an integer, got 8.0 (float)"),
        ({"max_seconds": float("inf")}, "max_seconds must be a finite number, got inf"),
        ({"max_seconds": float("nan")}, "max_seconds must be a finite number, got nan"),
        ({"max_seconds": 1e9}, "max_seconds must be positive, from 0.1 to 3600 s"),
        ({"max_seconds": "10"}, "max_seconds must be a finite number, got '10'"),
        ({"diffusion": "false"}, "diffusion must be true or false, got 'false'"),
        ({"device": None}, "device must be set, got None"),
        ({"device": "cuda:x"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'"),
        ({"prior_scale": 2}, "prior_scale must be a number from 0.1 to 1, got 2"),
    ],
)
def test_values_of_the_wrong_type_are_refused_naming_the_setting(change, words):
    with pytest.raises(InputError) as raised:
        Settings(**change)
    assert words in str(raised.value)


def test_none_is_accepted_exactly_where_a_setting_says_what_it_means():
    s = Settings(seed=None, clip_overlap=None, max_seconds=None)
    assert (s.seed, s.clip_overlap, s.max_seconds) == (None, None, None)
    with pytest.raises(InputError, match="steps must be set"):
        Settings(steps=None)


def test_the_readme_settings_table_is_the_generated_one():
    from pathlib import Path

    from diffueraser.settings import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n", readme.index("<!-- settings:start")) + 1
    table = readme[start:readme.index("<!-- settings:end -->")].strip()
    assert table == markdown_table(), "run `python -m diffueraser.settings` and paste its table into the README"
