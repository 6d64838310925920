#!/usr/bin/env bash
# On a GPU machine (transformers there): remake tests/golden/wide and pack
# it as OUT_DIR/wide.tgz.   tests/oracle/wide_goldens.sh OUT_DIR
set -eu
python3 tests/oracle/make_wide_models.py tests/golden/wide 2>&1 | grep -v "Writing model"
tar czf "$1/wide.tgz" tests/golden/wide
