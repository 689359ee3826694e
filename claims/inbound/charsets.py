"""Text out of bytes, the way mail really labels them.

Labels are read as the WHATWG Encoding Standard (what browsers and mail clients follow)
reads them: a label names the superset its writers actually use, so `gb2312` mail is
decoded as GB18030 (GBK bytes under a GB2312 label are the norm) and `iso-8859-1` as
windows-1252. Bytes with no label, an unknown label, `unknown-8bit`, or bytes
their label cannot decode are tried as UTF-8 (the commonest mislabelling), then handed to
charset-normalizer, which weighs the encodings English, Portuguese and Chinese mail uses
(a guess needs some text: a few words are often ambiguous). Nothing here raises.
"""

import codecs

from charset_normalizer import from_bytes

# The labels whose writers send a superset; the rest of Python's codec names are used as is.
SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "csgb2312": "gb18030",
    "euc-cn": "gb18030",
    "cp936": "gb18030",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
}
# Labels that say nothing about 8-bit bytes (an ASCII label on 8-bit bytes is simply wrong,
# most often over UTF-8): guess as if there were no label.
CANDIDATES = ["utf_8", "cp1252", "gb18030"]  # English and Portuguese, 简体中文
UNLABELLED = {"", "unknown-8bit", "x-unknown", "unknown", "8bit", "default", "x-user-defined", "us-ascii", "ascii"}


def decode(data: bytes, label: str | None) -> str:
    """`data` as text, trusting `label` where it decodes the bytes and guessing where not."""
    if data.isascii():
        return data.decode("ascii")
    codec = _codec(label)
    if codec is not None:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass  # mislabelled: fall through to the guesses
    return _guess(data, codec)


def _codec(label: str | None) -> str | None:
    name = (label or "").strip().strip('"').lower()
    if name in UNLABELLED:
        return None
    name = SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _guess(data: bytes, codec: str | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Only the encodings the supported languages are written in compete: left to choose among
    # all, charset-normalizer takes Portuguese in windows-1252 for Central European cp1250.
    best = from_bytes(data, cp_isolation=CANDIDATES).best()
    if best is not None:
        return str(best)
    # Nothing fits: keep every character we can, mark the rest with U+FFFD.
    return data.decode(codec or "cp1252", errors="replace")
