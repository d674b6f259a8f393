"""Splits SQL text into statements at `;` outside quotes and comments, with the line each
statement starts on: the rules of the migrator's splitter (src/migrate/parse.rs
`split_statements`), for the Python checks."""


def split_statements(text):
    out, cur, line, start, quote = [], [], 1, None, None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\n":
                line += 1
            if c == quote:
                quote = None
            i += 1
            continue
        if c == "-" and text[i + 1:i + 2] == "-":
            end = text.find("\n", i)
            if end < 0:
                break
            line += 1
            cur.append("\n")
            i = end + 1
            continue
        if c == "/" and text[i + 1:i + 2] == "*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            cur.append("\n" * text.count("\n", i, end))
            i = end
            continue
        if c == ";":
            if start is not None:
                out.append((start, "".join(cur).strip()))
            cur, start = [], None
            i += 1
            continue
        if c == "\n":
            line += 1
        elif not c.isspace() and start is None:
            start = line
        if c in "'\"`":
            quote = c
        cur.append(c)
        i += 1
    if start is not None and "".join(cur).strip():
        out.append((start, "".join(cur).strip()))
    return out
