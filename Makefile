# Two entry points do all set-up on a fresh machine (see README):
#   make run    create .venv if missing, then open lic-studio on the bundled default image
#   make test   create .venv if missing, then run the test suite
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test venv results results-optimize bd-by-image curve

# The README's measured numbers (needs ../shared: Kodak and the published anchors); the README's
# BD-rate and speed tables are then copied from them (scripts/readme_tables.py). Learning
# curves are drawn from the validation logs copied into results/learning; a log of a run started
# from earlier weights carries their step count, so sessions join into one curve: +WEIGHTS reads
# it from the manifest's training records, +STEPS gives it where the run started from a
# checkpoint rather than from named weights. The hybrid's logs from hybrid-s11 on validate named
# weights in a one-step run at lr 1e-12, so their offset is those weights' own steps (the
# residual codec's: refinement steps do not count), and hybrid-s13's main model is hybrid-s12's
# 35,109 + 6,531 steps. `make curve` redraws the curves alone.
KODAK ?= ../shared/data/kodak
ANCHORS ?= ../shared/anchors/kodak
# JPEG also with the psnr tables of the hybrid's base, and with those tables in the smallest
# scan (the hybrid's base codec itself). Each learned codec also without its post-filter, and
# the hybrid without its refinement filter and without both, so that each stage's gain is
# measured in the same run; the wavelet codec's sweep's parts from knob -0.25 and from 0 to 1
# (taken from the full sweep, not coded again), to show what each extension of the sweep below 0
# adds.
CODECS ?= jpeg,jpeg:tables=psnr,jpeg:tables=psnr:scan=smallest,hybrid,hybrid:refine=off,hybrid:postfilter=off,hybrid:refine=off:postfilter=off,wavelet,wavelet:rate=-0.25..1,wavelet:rate=0..1,wavelet:postfilter=off
# The encoders' 10-step latent refinement, in a run of its own: it takes twice as long as all of
# the above (each step costs about an encode).
OPTIMIZE_CODECS ?= jpeg,hybrid:optimize=10,wavelet:optimize=10
OPTIMIZE_OUT ?= results/kodak-optimize
# The bench times each learned codec with and without its post-filter, so that the table shows
# what the post-filter costs (the encoder fits and applies it, the decoder applies it).
BENCH_CODECS ?= jpeg,hybrid,hybrid:postfilter=off,wavelet,wavelet:postfilter=off
JOBS ?= 2
BD_BY_IMAGE ?= results/kodak/hybrid.json results/kodak/wavelet.json
# lic-train --val-images 2: the first two of the folder's sorted images.
VALIDATION_IMAGES ?= kodim01,kodim02
LEARNING := results/learning
CURVES ?= $(LEARNING)/wavelet-cpu-s1-val.csv=wavelet $(LEARNING)/wavelet-cpu-s2-val.csv=wavelet+wavelet-cpu-s1 \
	$(LEARNING)/wavelet-cpu-s3-val.csv=wavelet+11339 \
	$(LEARNING)/wavelet-s5-val.csv=wavelet+wavelet-gpu-s4 $(LEARNING)/wavelet-s6-val.csv=wavelet+wavelet-s5 \
	$(LEARNING)/wavelet-s9-val.csv=wavelet+wavelet-gpu-s8b $(LEARNING)/wavelet-s10-val.csv=wavelet+wavelet-s9 \
	$(LEARNING)/wavelet-s11-val.csv=wavelet+wavelet-s10 $(LEARNING)/wavelet-s12-val.csv=wavelet+wavelet-gpu-s12 \
	$(LEARNING)/wavelet-s13-val.csv=wavelet+wavelet-s12 $(LEARNING)/wavelet-s14-val.csv=wavelet+wavelet-s13 \
	$(LEARNING)/wavelet-s16-val.csv=wavelet+wavelet-s15 $(LEARNING)/wavelet-s17-val.csv=wavelet+wavelet-s16 \
	$(LEARNING)/wavelet-s18-val.csv=wavelet+wavelet-s17 $(LEARNING)/wavelet-s19-val.csv=wavelet+wavelet-s18 \
	$(LEARNING)/wavelet-s21-val.csv=wavelet+wavelet-s20 $(LEARNING)/wavelet-s22-val.csv=wavelet+wavelet-s21 $(LEARNING)/wavelet-s23-val.csv=wavelet+wavelet-s22 \
	$(LEARNING)/wavelet-s25-val.csv=wavelet+wavelet-s23 $(LEARNING)/wavelet-s26-val.csv=wavelet+wavelet-s25 \
	$(LEARNING)/wavelet-s27-val.csv=wavelet+wavelet-s25 $(LEARNING)/wavelet-s28-val.csv=wavelet+wavelet-s27 $(LEARNING)/wavelet-s29-val.csv=wavelet+wavelet-s27 \
	$(LEARNING)/wavelet-s30-val.csv=wavelet+106614 $(LEARNING)/wavelet-s31-val.csv=wavelet+109614 \
	$(LEARNING)/wavelet-s32-val.csv=wavelet+109614 $(LEARNING)/wavelet-s33-val.csv=wavelet+109614 $(LEARNING)/wavelet-s34-val.csv=wavelet+109614 $(LEARNING)/wavelet-s35-val.csv=wavelet+112214 \
	$(LEARNING)/wavelet-s36-val.csv=wavelet+112764 $(LEARNING)/wavelet-s37-val.csv=wavelet+112764 $(LEARNING)/wavelet-s38-val.csv=wavelet+112764 $(LEARNING)/wavelet-s39-val.csv=wavelet+114464 \
	$(LEARNING)/hybrid-cpu-s1-val.csv=hybrid $(LEARNING)/hybrid-cpu-s2-val.csv=hybrid+10000 \
	$(LEARNING)/hybrid-s10-val.csv=hybrid+hybrid-s9 $(LEARNING)/hybrid-s11-val.csv=hybrid+hybrid-s11 \
	$(LEARNING)/hybrid-s12-val.csv=hybrid+hybrid-s12 $(LEARNING)/hybrid-s13-val.csv=hybrid+41639 \
	$(LEARNING)/joint-j2-val.csv=hybrid+52901 $(LEARNING)/joint-j3-val.csv=hybrid+59673 $(LEARNING)/refine-c15-val.csv=hybrid+59216 \
	$(LEARNING)/joint-j4-val.csv=hybrid+67216 $(LEARNING)/joint-j5-val.csv=hybrid+67216 $(LEARNING)/refine-c16-val.csv=hybrid+67216

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lic-studio $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

results: $(STAMP)
	$(VENV)/bin/lic-codec eval $(KODAK) --codecs $(CODECS) --anchors $(ANCHORS) --jobs $(JOBS) --ceiling --out results/kodak
	$(MAKE) -s bd-by-image
	$(VENV)/bin/lic-codec bench $(KODAK) --codecs $(BENCH_CODECS) --limit 8 --repeat 3 --threads 1 --out results/kodak/bench.json
	$(MAKE) curve
	$(VENV)/bin/python scripts/readme_tables.py

results-optimize: $(STAMP)
	$(VENV)/bin/lic-codec eval $(KODAK) --codecs $(OPTIMIZE_CODECS) --anchors $(ANCHORS) --jobs $(JOBS) --out $(OPTIMIZE_OUT)

# Each image's BD-rate, and the BD-rates without the images that training validated on (the
# weights shipped were chosen by that validation), from the per-image values in the eval's curves.
bd-by-image: $(STAMP)
	$(VENV)/bin/lic-codec bd results/kodak/jpeg.json $(BD_BY_IMAGE) --per-image > results/kodak/bd_rate_by_image.md
	$(VENV)/bin/lic-codec bd results/kodak/jpeg.json $(BD_BY_IMAGE) --exclude $(VALIDATION_IMAGES) > results/kodak/bd_rate_unseen.md

curve: $(STAMP)
	$(VENV)/bin/lic-train curve $(CURVES) --reference $(KODAK) --images 2 --crop 256 --out $(LEARNING)/curve.png
