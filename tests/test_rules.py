"""Levels and the pure input rules (docs/rules.md)."""
import pytest

from rules import (LEVEL_THRESHOLDS, UserError, clean_image_url, clean_int, clean_name,
                    clean_timezone, level_for, progress, progress_bar)
from interactions import shown as escape_text


@pytest.mark.parametrize("xp, level", [(0, 1), (299, 1), (300, 2), (899, 2), (900, 3), (6500, 5),
                                        (354999, 19), (355000, 20), (10**12, 20), (-50, 1)])
def test_level_is_the_number_of_thresholds_at_or_below_the_xp(xp, level):
    assert level_for(xp) == level


def test_every_threshold_starts_its_level():
    for i, threshold in enumerate(LEVEL_THRESHOLDS):
        assert level_for(threshold) == i + 1
        if threshold:
            assert level_for(threshold - 1) == i


@pytest.mark.parametrize("xp, done, span, filled", [(0, 0, 300, 0), (150, 150, 300, 10), (299, 299, 300, 19),
                                                     (300, 0, 600, 0), (600, 300, 600, 10), (354999, 49999, 50000, 19)])
def test_progress_bar_has_20_cells_and_shows_progress_inside_the_level(xp, done, span, filled):
    assert progress(xp) == (done, span)
    bar = progress_bar(xp)
    assert len(bar) == 20 and bar.count("█") == filled


def test_level_20_shows_no_bar():
    assert progress(355000) is None and progress_bar(400000) is None


def test_name_rules():
    assert clean_name("  Luna  ") == "Luna"
    assert clean_name("🐺" * 100) == "🐺" * 100
    for bad in ("", " \t ", "a" * 101, "a\nb", "a\rb", "a\u2028b", "\x1b[31m", None, 5):
        with pytest.raises(UserError):
            clean_name(bad)


def test_image_url_rules():
    assert clean_image_url("  https://x.org/a.png ") == "https://x.org/a.png"
    assert clean_image_url("HTTP://X.ORG/a") == "HTTP://X.ORG/a"
    assert clean_image_url("") is None and clean_image_url(None) is None
    for bad in ("x.org/a.png", "https://", "https:// x", "data:image/png;base64,AAAA", 3):
        with pytest.raises(UserError):
            clean_image_url(bad)


def test_timezone_rules():
    assert clean_timezone(" asia/TOKYO ") == "Asia/Tokyo"
    assert clean_timezone("UTC") == "UTC"
    for bad in ("Asia/Atlantis", "", None, "+05:00"):
        with pytest.raises(UserError, match="IANA"):
            clean_timezone(bad)


def test_int_rules_name_the_setting_and_the_range():
    assert clean_int(5, "Cap", 1, 10) == 5
    with pytest.raises(UserError, match="Cap must be between 1 and 10; you gave 0"):
        clean_int(0, "Cap", 1, 10)
    for bad in (True, "5", 2.0, None):
        with pytest.raises(UserError, match="whole number"):
            clean_int(bad, "Cap", 1, 10)


def test_escaped_text_cannot_ping_or_format():
    shown = escape_text("@everyone **bold** <@123>")
    assert "@everyone" not in shown and "**" not in shown


def test_hf_parsing_reads_title_description_and_fields_lower_cased():
    from rules import parse_hf
    assert parse_hf("Luna goes hunting", None, []) == ("Luna", False)
    assert parse_hf("  Old Bram  goes foraging", "", [("Result", "TIME TO HARVEST")]) == ("Old Bram", True)
    assert parse_hf("Luna goes hunting", "x", [("Time to gut and harvest", None)]) == ("Luna", True)
    assert parse_hf("Luna GOES HUNTING", None, []) == ("Luna", False)
    assert parse_hf("Weather", "sunny; nobody goes hunting", []) is None  # the title names no one
    assert parse_hf("Luna went fishing", "time to harvest", []) is None
    assert parse_hf(None, "Luna goes hunting", []) is None
