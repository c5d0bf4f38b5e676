#!/usr/bin/python3
"""make_texts.py - writes texts.json, the texts every tokenizer golden set encodes: hand-picked
cases (English, accents, CJK, Korean, Arabic/Hebrew RTL, Cyrillic, Greek, Devanagari, Thai, emoji
with ZWJ/skin tones/flags, digits and long numbers, whitespace runs, tabs/newlines/CRLF,
contractions in both cases, code in Python/C/JS/Rust/SQL/HTML/shell, punctuation runs, special
token strings, a long mixed paragraph), then targeted whitespace/number/case edge cases, then 150
random strings (seed 1234) drawn from a palette of scripts, marks, digits and whitespace.
Deterministic: rerunning gives the same file."""
import json
import os
import random

BASE = [
 'Hello world',
 'The quick brown fox jumps over the lazy dog.',
 ' leading space, trailing space ',
 '  two leading spaces and   three inside',
 "It's a dog's life; they're here, we've gone, I'm done, you'll see, he'd go.",
 "IT'S LOUD, THEY'RE HERE, WE'VE GONE, I'M DONE, YOU'LL SEE, HE'D GO, DON'T",
 "don't can't won't shouldn't y'all 'tis rock'n'roll",
 'Numbers: 0 7 42 123 1234 12345 3.14159 -2.5e-10 1,000,000 0x1F 007',
 '31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679',
 'Phone: +1 (555) 123-4567, date 2024-03-15T12:34:56Z, IP 192.168.0.1',
 'tabs\tand\ttabs\t\tdouble\n',
 'line one\nline two\r\nline three\n\n\nafter blank lines\n',
 '   \n\t  \n  mixed whitespace  \t\n',
 'trailing spaces    ',
 '\n\n\n',
 '                                                                ',
 'Caf\xe9 na\xefve r\xe9sum\xe9 fa\xe7ade \xfcber Stra\xdfe \xc5ngstr\xf6m se\xf1or',
 'Decomposed: Cafe\u0301 nai\u0308ve',
 '\u4eca\u65e5\u306f\u3044\u3044\u5929\u6c17\u3067\u3059\u306d\u3002\u6771\u4eac\u3078\u884c\u304d\u307e\u3057\u3087\u3046\uff01',
 '\u4f60\u597d\uff0c\u4e16\u754c\uff01\u6211\u4eec\u6b63\u5728\u6d4b\u8bd5\u5206\u8bcd\u5668\u3002',
 '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\ub3c4 \uc788\uc2b5\ub2c8\ub2e4.',
 '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645! \u0647\u0630\u0627 \u0646\u0635 \u0639\u0631\u0628\u064a.',
 '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd, mixed RTL \u05e2\u05d1\u05e8\u05d9\u05ea and LTR',
 '\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0415\u0449\u0451 \u043e\u0434\u0438\u043d \u0442\u0435\u0441\u0442.',
 '\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5 \u2014 \u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u2014 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35',
 'Emoji: \U0001f600\U0001f680\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f \U0001f1fa\U0001f1f8 done',
 'Math: \u2200x\u2208\u211d, x\xb2 \u2265 0; \u2211 \u221a \u221e \u2260 \u2248 \xbd \u2153',
 'Fullwidth \uff21\uff22\uff23 \uff11\uff12\uff13 and ideographic\u3000space',
 'nbsp\xa0here and thin\u2009space',
 'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
 '#include <stdio.h>\nint main(void) {\n\tprintf("%d\\n", 42);\n\treturn 0;\n}\n',
 'const f = async (x) => { await x?.y ?? z; return `${x}`; }; // JS\n',
 'fn main() { let v: Vec<u32> = (0..10).map(|i| i * i).collect(); println!("{:?}", v); }',
 "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
 '<div class="x">&nbsp;<a href=\'https://example.com/?q=1&r=2\'>link</a></div>',
 "$ grep -rn 'foo' . | awk '{print $1}' > /tmp/out.txt 2>&1 && echo ok",
 'Punctuation!!! ??? ... ,,, ;;; ::: --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}',
 '"quoted" \'single\' \u201ccurly\u201d \u2018curly\u2019 \xabguillemets\xbb \u2026 \u2013 \u2014',
 'a.b,c;d:e!f?g(h)i[j]k{l}m<n>o/p\\q|r~s`t@u#v$w%x^y&z*',
 '====================================================================',
 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
 'supercalifragilisticexpialidocious antidisestablishmentarianism',
 'camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case-id',
 'MiXeD CaSe WoRdS aNd ACRONYMS like NASA, HTTP/2, and GPT-4o',
 'special text <|endoftext|> inside </s> and <s> and <|eot_id|>',
 '\u2581already\u2581has\u2581marks \u2581',
 'x',
 ' ',
 '\t',
 '0',
 "In 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\nIn 1869, Dmitri Mendeleev published the periodic table; it's still used today. \u5143\u7d20\u5468\u671f\u8868\uff08\u3052\u3093\u305d\u3057\u3085\u3046\u304d\u3072\u3087\u3046\uff09 def f(x): return x**2  # squares\n\t\xe9\xe8\xea 12345678901234567890 \U0001f600!\n",
]

TARGETED = [
 'NEL\x85here',
 'BOM\ufeffhere',
 'ZWSP\u200bhere',
 'LS\u2028PS\u2029end',
 'ogham\u1680space',
 'vt\x0bff\x0cend',
 'fs\x1cgs\x1drs\x1eus\x1fend',
 'nbsp \xa0 \xa0x',
 '\xa0\xa0\xa0',
 ' \u3000 \u3000x',
 'emsp\u2003\u2003\u2003y',
 'roman \u216b \u2167 fraction \xbd sup \xb2\xb3 circled \u2460\u2461',
 'arabic-indic \u0661\u0662\u0663\u0664\u0665 devanagari \u0967\u0968\u0969\u096a',
 "x's Y'S it'S he'LL she'Ve we'RE 'd 'm ''s '''",
 "long s: \u017ftop it'\u017f Kelvin \u212a it'\u212a",
 '1234567 12345678 123456789 1 12 123 1,234,567.891',
 'a\r\nb\r\rc\n\rd \r\n e',
 '  \n  x  \n\n  y',
 'word\n\n\n\n    indented',
 'tab\t\t\tx \t \t y',
 '!!!\n\n???\r\n...',
 '_under_score__ __dunder__ ___',
 '\U0001f468\U0001f3ff\u200d\U0001f4bb and \U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1',
 '\u0915\u094d\u0937\u093f \u0ba4\u0bae\u0bbf\u0bb4\u0bcd \u1780\u17d2\u1798\u17c2\u179a',
 '\xc0\u0301\u0302 o\u0308\u0304 \u1e9b\u0323',
 '\U00010400\U00010401 deseret \U0001d400\U0001d401 math bold',
]


def random_texts():
    rng = random.Random(1234)
    palette = []
    palette += [chr(c) for c in range(0x20, 0x7f)] * 3
    palette += list(" " * 40 + "\n" * 8 + "\t" * 4 + "\r" * 2)
    palette += ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "''"] * 3
    ranges = [(0xC0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x4FFF), (0x3041, 0x3096),
              (0xAC00, 0xAD00), (0x627, 0x64A), (0x5D0, 0x5EA), (0x905, 0x939), (0x1F600, 0x1F64F),
              (0x300, 0x36F), (0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19), (0x2200, 0x22FF),
              (0x2010, 0x2027), (0x3001, 0x3003), (0xFF01, 0xFF5E), (0x1F300, 0x1F3FF)]
    for lo, hi in ranges:
        palette += [chr(rng.randint(lo, hi)) for _ in range(12)]
    out = []
    for _ in range(150):
        n = rng.randint(1, 80)
        out.append("".join(rng.choice(palette) for _ in range(n)))
    return out


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "texts.json")
    with open(path, "w") as f:
        json.dump(BASE + TARGETED + random_texts(), f, ensure_ascii=True, indent=0)


if __name__ == "__main__":
    main()
