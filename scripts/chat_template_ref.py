#!/usr/bin/env python3
"""chat_template_ref.py - renders every chat template (*.jinja) in a directory for every case of
its conversations.json with python3-jinja2 configured as Hugging Face transformers configures it
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception,
tojson with ensure_ascii=False, strftime_now): the independent reference for vibee's Jinja
interpreter (tests/test_chat_template.c).

Output, one record per (template, case):
  @@ TEMPLATE CASE ADD_GEN STATUS DATA_LEN OUT_LEN\\n DATA OUT \\n
STATUS is ok or error; DATA is the JSON object of variables the case renders with (UTF-8);
OUT is the rendered text (ok) or the exception message (error)."""
import json
import os
import sys
from datetime import datetime

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

BOS, EOS = "<|bos|>", "<|eos|>"


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def main():
    d = sys.argv[1]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    cases = json.load(open(os.path.join(d, "conversations.json"), encoding="utf-8"))
    out = sys.stdout.buffer
    for name in sorted(os.listdir(d)):
        if not name.endswith(".jinja"):
            continue
        src = open(os.path.join(d, name), encoding="utf-8").read()
        tmpl = env.from_string(src)
        for i, case in enumerate(cases):
            data = dict(case["vars"])
            for add_gen in (True, False):
                try:
                    text = tmpl.render(bos_token=BOS, eos_token=EOS, add_generation_prompt=add_gen, **data)
                    status = "ok"
                except Exception as e:  # the template's own errors are part of the reference
                    text, status = str(e), "error"
                dj = json.dumps(data, ensure_ascii=False).encode("utf-8")
                tb = text.encode("utf-8")
                out.write(b"@@ %s %d %d %s %d %d\n" % (name.encode(), i, int(add_gen), status.encode(), len(dj), len(tb)))
                out.write(dj + tb + b"\n")


if __name__ == "__main__":
    main()
