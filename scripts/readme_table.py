"""Rewrite the benchmark table between the README's markers with `milabox list --format markdown`."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
table = subprocess.run([sys.executable, "-m", "milabox", "list", "--format", "markdown"], capture_output=True,
                       text=True, check=True).stdout.strip()
text = README.read_text()
new = re.sub(r"(<!-- benchmarks:start -->\n).*?(\n<!-- benchmarks:end -->)", lambda m: m[1] + table + m[2], text,
             flags=re.DOTALL)
README.write_text(new)
print("README table is current" if new == text else "README table rewritten")
