#!/usr/bin/env python3
"""Checks the relative links and images of the project's Markdown files.

    python3 tools/check-links.py              # exit 1 and one line per broken link
    python3 tools/check-links.py --self-test  # the checker against a tree with known faults

Read: README.md, CHANGELOG.md, BENCHMARKS.md, docs/**/*.md and examples/**/*.md. Each inline
link or image, reference definition and HTML href/src must name a file or directory that exists
in the repository, and an anchor (`#part`, `other.md#part`) must be a heading of the Markdown file
it points into, slugged as GitHub does, or an explicit `<a id=...>`/`<a name=...>`. Links with a
scheme (https:, mailto:) are not followed; fenced code blocks, inline code and HTML comments are
not read. Anchors into other kinds of files (a line anchor into a YAML file) are not checked.
Standard library only.
"""
import os
import re
import sys
import tempfile
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_FILES = ["README.md", "CHANGELOG.md", "BENCHMARKS.md"]
TREES = ["docs", "examples"]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>\n]*>|\S+)", re.M)
HTML_ATTR = re.compile(r"<(?:a|img|source)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
EXPLICIT_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
COMMENT = re.compile(r"<!--.*?-->", re.S)


def blank_out(text, start, end):
    """`text` with [start, end) turned into spaces, line breaks kept, so offsets and line numbers
    still point into the original."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def prose(text, inline_code=True):
    """The Markdown `text` with fenced code blocks, HTML comments and (unless told not to: a
    heading's inline code is part of its anchor) inline code blanked out. Inline code is matched
    across line breaks, as a wrapped paragraph renders it."""
    lines = text.split("\n")
    fence = None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            lines[i] = ""
        elif fence is not None:
            closing = m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not line.strip().strip(fence[0])
            lines[i] = ""
            if closing:
                fence = None
    text = "\n".join(lines)
    for m in COMMENT.finditer(text):
        text = blank_out(text, m.start(), m.end())
    if not inline_code:
        return text
    # A run of N backticks opens a span that the next run of exactly N closes; an unmatched run is
    # literal. Blank lines end a paragraph, so a span never crosses one.
    i = 0
    while i < len(text):
        if text[i] != "`":
            i += 1
            continue
        run = len(text) - i - len(text[i:].lstrip("`"))
        closer = re.compile(r"(?<!`)" + "`" * run + r"(?!`)")
        m = closer.search(text, i + run)
        paragraph_end = text.find("\n\n", i)
        if m and (paragraph_end < 0 or m.start() < paragraph_end):
            text = blank_out(text, i, m.end())
            i = m.end()
        else:
            i += run
    return text


def heading_text(raw):
    """What GitHub renders of a heading's Markdown, the text its anchor is made from."""
    parts = re.split(r"(`+)(.*?)\1", raw)
    out = []
    # re.split with two groups yields text, run, code, text, run, code, ...
    for k in range(0, len(parts), 3):
        plain = parts[k]
        plain = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", plain)
        plain = re.sub(r"<[^>]+>", "", plain)
        plain = re.sub(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", "", plain)
        plain = plain.replace("\\", "")
        out.append(plain)
        if k + 2 < len(parts):
            out.append(parts[k + 2])
    return "".join(out).strip()


def slug(text):
    text = text.lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(text):
    """The anchors a Markdown file offers: its headings as GitHub slugs them (a repeated one gets
    -1, -2, ...) and its explicit `<a id>`/`<a name>` anchors."""
    found = set()
    used = {}

    def add(heading):
        base = slug(heading_text(heading))
        name = base
        while name in used:
            used[base] += 1
            name = f"{base}-{used[base]}"
        used[name] = 0
        found.add(name)

    lines = prose(text, inline_code=False).split("\n")
    for i, line in enumerate(lines):
        m = ATX.match(line)
        if m:
            add(m.group(2) or "")
            continue
        # Setext: a paragraph line underlined with === or ---.
        if i + 1 < len(lines) and line.strip() and SETEXT.match(lines[i + 1]) \
                and not line.lstrip().startswith(("|", "-", "*", "+", ">")) \
                and (i == 0 or not lines[i - 1].strip()):
            add(line.strip())
    for m in EXPLICIT_ANCHOR.finditer(prose(text)):
        found.add(m.group(1))
    return found


def links(text):
    """(line, target) for each link, image, reference definition and href/src in `text`."""
    text = prose(text)
    found = []
    for pattern in (INLINE, REFERENCE, HTML_ATTR):
        for m in pattern.finditer(text):
            target = m.group(1)
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((text.count("\n", 0, m.start(1)) + 1, target))
    return sorted(found)


def markdown_files(root):
    files = [name for name in TOP_FILES if os.path.isfile(os.path.join(root, name))]
    for tree in TREES:
        for directory, subdirs, names in os.walk(os.path.join(root, tree)):
            subdirs.sort()
            for name in sorted(names):
                if name.endswith(".md"):
                    files.append(os.path.relpath(os.path.join(directory, name), root))
    return files


def check(root):
    """Returns the broken links as (file, line, target, reason), and counts for the summary."""
    broken = []
    cache = {}
    files = markdown_files(root)
    count = {"files": len(files), "links": 0, "anchors": 0}

    def anchors_of(path):
        if path not in cache:
            with open(path, encoding="utf-8") as f:
                cache[path] = anchors(f.read())
        return cache[path]

    for rel in files:
        source = os.path.join(root, rel)
        with open(source, encoding="utf-8") as f:
            text = f.read()
        for line, target in links(text):
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            count["links"] += 1
            path, _, fragment = target.partition("#")
            path = urllib.parse.unquote(path.split("?", 1)[0])
            fragment = urllib.parse.unquote(fragment)
            if not path:
                resolved = source
            elif path.startswith("/"):
                resolved = os.path.normpath(os.path.join(root, path.lstrip("/")))
            else:
                resolved = os.path.normpath(os.path.join(os.path.dirname(source), path))
            if os.path.relpath(resolved, root).startswith(".."):
                broken.append((rel, line, target, "outside the repository"))
                continue
            if not os.path.exists(resolved):
                broken.append((rel, line, target, "no such file or directory"))
                continue
            if not fragment:
                continue
            count["anchors"] += 1
            if os.path.isdir(resolved):
                resolved = os.path.join(resolved, "README.md")
                if not os.path.isfile(resolved):
                    broken.append((rel, line, target, "anchor into a directory without README.md"))
                    continue
            if not resolved.endswith(".md"):
                continue
            if fragment not in anchors_of(resolved):
                where = os.path.relpath(resolved, root)
                broken.append((rel, line, target, f"no heading or anchor '{fragment}' in {where}"))
    return broken, count


def report(root):
    broken, count = check(root)
    for rel, line, target, reason in broken:
        print(f"{rel}:{line}: {target} ({reason})")
    if broken:
        print(f"{len(broken)} broken of {count['links']} relative links in {count['files']} files",
              file=sys.stderr)
        return 1
    print(f"check-links: {count['links']} relative links ({count['anchors']} with an anchor) "
          f"in {count['files']} files, none broken")
    return 0


SELF_TEST_FILES = {
    "README.md": """\
# Top heading

[fine](docs/a.md) and [fine anchor](docs/a.md#section-one), ![fine image](docs/pic.png).
[same file](#top-heading), [explicit](#kept-id), [first repeat](docs/a.md#repeated),
[second repeat](docs/a.md#repeated-1), [punctuation](docs/a.md#the---mesh-flag-v2).
[directory](docs/) and [its readme's anchor](examples/#example-one).
[missing file](docs/nope.md)
[missing anchor](docs/a.md#no-such-heading)
[third repeat](docs/a.md#repeated-2)
![missing image](docs/missing.png)
[outside](../elsewhere.md)
[ref]: docs/gone.md
[web](https://example.com/x.md) and [mail](mailto:someone@example.com).

<a id="kept-id"></a>

```sh
# a blank line follows, so only the fence can hide the link

[in a code block](docs/code-block.md)
```

An inline `[in code](docs/inline.md)` span, and one ``that `wraps
[across](docs/wrapped.md) lines``.
<!-- [commented out](docs/comment.md) -->
""",
    "docs/a.md": """\
# A

## Section one

## Repeated

## Repeated

## The `--mesh` flag (v2)!

Back to [the top](../README.md#top-heading), and [not there](../README.md#section-one).
""",
    "docs/pic.png": "",
    "examples/README.md": "# Examples\n\n## Example one\n",
}

SELF_TEST_BROKEN = {
    ("README.md", 7, "docs/nope.md"),
    ("README.md", 8, "docs/a.md#no-such-heading"),
    ("README.md", 9, "docs/a.md#repeated-2"),
    ("README.md", 10, "docs/missing.png"),
    ("README.md", 11, "../elsewhere.md"),
    ("README.md", 12, "docs/gone.md"),
    ("docs/a.md", 11, "../README.md#section-one"),
}


def self_test():
    with tempfile.TemporaryDirectory() as root:
        for rel, content in SELF_TEST_FILES.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(content)
        broken, _ = check(root)
    found = {(rel, line, target) for rel, line, target, _ in broken}
    if found == SELF_TEST_BROKEN and len(broken) == len(found):
        print(f"check-links self-test: the {len(found)} planted broken links found, nothing else")
        return 0
    for item in sorted(SELF_TEST_BROKEN - found):
        print("self-test: not reported: %s:%d: %s" % item)
    for item in sorted(found - SELF_TEST_BROKEN):
        print("self-test: reported but fine: %s:%d: %s" % item)
    return 1


def main():
    args = sys.argv[1:]
    if args == ["--self-test"]:
        return self_test()
    if args:
        sys.exit("usage: check-links.py [--self-test]")
    return report(ROOT)


if __name__ == "__main__":
    sys.exit(main())
