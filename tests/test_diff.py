"""bot.diff: every kind of file git can put in a diff becomes a FileChange with a status."""

from __future__ import annotations

import pytest

from bot.diff import apply_limits, parse_diff
from risk_core.errors import UsageError

ALL_KINDS = b"""diff --git a/a.py b/a.py
old mode 100644
new mode 100755
diff --git a/sub b/sub
index 1234567..89abcde 160000
--- a/sub
+++ b/sub
@@ -1 +1 @@
-Subproject commit 1234567890123456789012345678901234567890
+Subproject commit 89abcde890123456789012345678901234567890
diff --git a/img.png b/img.png
new file mode 100644
index 0000000..1111111
Binary files /dev/null and b/img.png differ
diff --git a/old.py b/new.py
similarity index 90%
rename from old.py
rename to new.py
index 1111111..2222222 100644
--- a/old.py
+++ b/new.py
@@ -1,2 +1,3 @@
 x = 1\r
-y = 2\r
+y = 3\r
+z = 4
\\ No newline at end of file
diff --git a/gone.py b/gone.py
deleted file mode 100644
index 1111111..0000000
--- a/gone.py
+++ /dev/null
@@ -1 +0,0 @@
-print(1)
diff --git a/fresh.py b/fresh.py
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/fresh.py
@@ -0,0 +1,2 @@
+def f():
+    return "caf\xe9"
"""


def by_path(diff):
    return {f.path: f for f in diff.files}


def test_every_kind_of_change():
    parsed = parse_diff(ALL_KINDS)
    files = by_path(parsed)
    assert files["a.py"].status == "mode-change"
    assert (files["a.py"].old_mode, files["a.py"].new_mode) == ("100644", "100755")
    assert files["sub"].status == "submodule"
    assert files["sub"].submodule_commit.startswith("89abcde")
    assert files["sub"].added_lines == []
    assert files["img.png"].status == "binary" and files["img.png"].is_binary
    renamed = files["new.py"]
    assert renamed.status == "renamed" and renamed.old_path == "old.py"
    assert renamed.added_lines == [2, 3]
    assert renamed.added_text == {2: "y = 3", 3: "z = 4"}  # CRLF stripped ...
    assert renamed.crlf and renamed.no_newline_at_end  # ... and remembered
    assert files["gone.py"].status == "deleted" and files["gone.py"].added_lines == []
    fresh = files["fresh.py"]
    assert fresh.status == "added" and fresh.old_path is None and fresh.added_lines == [1, 2]


def test_undecodable_bytes_are_replaced_with_a_warning():
    parsed = parse_diff(ALL_KINDS)
    assert "\ufffd" in by_path(parsed)["fresh.py"].added_text[2]
    assert any("undecodable" in w for w in parsed.warnings)


def test_modified_file_and_hunk_lines():
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@ def f():\n a\n-b\n+B\n c\n"
    (change,) = parse_diff(diff).files
    assert change.status == "modified" and change.added_lines == [2]
    assert change.hunks[0].section_header == "def f():"
    assert change.hunks[0].lines == [(" ", 1, "a"), ("-", None, "b"), ("+", 2, "B"), (" ", 3, "c")]


@pytest.mark.parametrize(
    "bad",
    [
        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-x\n",  # hunk shorter than its header says
        "hello, this is not a diff\n",
        "--- a/x\n+++ b/x\n@@ -zz @@\n+x\n",  # a hunk header that is not one: was 0 files, silently
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,zz @@\n+x\n",
        "diff --git a/x b/x\n@@ -zz @@\n+x\n",  # ... under a git header without ---/+++: was 0 lines, exit 0
        "diff --git a/x b/x\n@@ -1 +1 @@\n-a\n+b\n",  # a hunk with no file header: unidiff drops it
    ],
)
def test_malformed_diff_is_one_line_usage_error(bad):
    with pytest.raises(UsageError) as info:
        parse_diff(bad)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_empty_diff_is_no_files():
    assert parse_diff(b"").files == []


def test_limits_skip_with_reasons_never_silently():
    diff = "".join(f"--- a/f{i}.py\n+++ b/f{i}.py\n@@ -0,0 +1,{i + 1} @@\n" + "+x\n" * (i + 1) for i in range(4))
    parsed = parse_diff(diff)
    kept, skipped = apply_limits(parsed, max_files=3, max_added_lines=4)
    assert [c.path for c in kept] == ["f0.py", "f1.py"]  # 1 + 2 lines; f2 (3 lines) would exceed 4
    reasons = dict(skipped)
    assert "exceed the limit of 4 added lines" in reasons["f2.py"]
    assert "3 files" not in reasons["f2.py"]
    assert set(reasons) == {"f2.py", "f3.py"}
