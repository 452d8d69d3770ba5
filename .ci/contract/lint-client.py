"""What a frontend developer writes needs no escape hatch from the generated types: no
non-null assertion (`x!`), no cast (`as T`, but `as const`), no `?? null`, no `any`, no
`@ts-` directive, in the typed client and the flows through it. Comments are skipped."""

import pathlib
import re
import sys

ESCAPES = re.compile(
    r"[\w)\]]!(?=[.)\];,\s])"  # non-null assertion
    r"|\bas (?!const\b)[\w{\[(]"  # cast
    r"|\?\? null|<any>|:\s*any\b|@ts-"
)

found = []
for path in sorted(pathlib.Path("src").glob("*.ts")):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("//", 1)[0]
        stripped = code.strip()
        if stripped.startswith(("*", "/*", "import ")):
            continue
        code = re.sub(r'"[^"]*"|`[^`]*`', '""', code)  # strings say what they like
        if ESCAPES.search(code):
            found.append(f"{path}:{number}: {line.strip()}")
if found:
    print("\n".join(found))
    sys.exit("contract: the typed client escapes its types (above)")
