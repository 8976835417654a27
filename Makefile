# datos - the only entry point a user needs.
#
#   make run    the whole system on the local GCP emulator (Ctrl-C stops it)
#   make test   installs what is missing, builds, runs every test suite
#
#   make        builds what a user installs: build/libdatos.a, build/mod_datos.so,
#               build/datos-loader
#
#   make bench  the benchmarks (tests/bench/results.md, plots, docs/benchmarks.md)
#   make docs   docs/architecture.svg from docs/architecture.dot (Graphviz), and
#               docs/status-page.png (the status page in headless Chromium)
#
# Other targets: deps, test-build (the sanitizer, unit and fuzz builds),
# unit, fuzz, fuzz-replay, itest, bench-emulator, bench-record,
# install (DESTDIR, PREFIX), clean.

SHELL := /bin/bash
.DEFAULT_GOAL := all
.SUFFIXES:

PYTHON := /usr/bin/python3
BUILD := build
APXS := apxs

# Debian packages the project needs, listed once.
DEB_PACKAGES := build-essential pkg-config ca-certificates curl openssl \
  apache2 apache2-bin apache2-dev apache2-utils libapr1-dev libaprutil1-dev \
  libcurl4-openssl-dev libjansson-dev libssl-dev libcmocka-dev zlib1g-dev \
  clang libclang-rt-14-dev clang-format \
  python3-pytest python3-pytest-xdist python3-requests python3-locust python3-yaml \
  wrk memcached redis-server prometheus \
  systemd chromium fonts-dejavu-core

# Resolved once, the first time a recipe needs them (so `make deps` can
# install the tools first), instead of once per compile.
cached = $(if $(__$1),,$(eval __$1 := $$(shell $2)))$(__$1)
APR_INCLUDES = $(call cached,apr_inc,apr-1-config --includes --cppflags)
APR_LIBS = $(call cached,apr_libs,apu-1-config --link-ld --libs; apr-1-config --link-ld --libs)
DEP_CFLAGS = $(call cached,dep_cflags,pkg-config --cflags libcurl jansson libcrypto zlib)
DEP_LIBS = $(call cached,dep_libs,pkg-config --libs libcurl jansson libcrypto zlib)
CMOCKA_CFLAGS = $(call cached,cmocka_cflags,pkg-config --cflags cmocka)
CMOCKA_LIBS = $(call cached,cmocka_libs,pkg-config --libs cmocka)
# The unit tests' scripted server speaks TLS too (libssl from libssl-dev).
UNIT_SSL_LIBS = $(call cached,unit_ssl_libs,pkg-config --libs libssl)

WARN := -Wall -Wextra -Werror
CSTD := -std=gnu11
OPT_CFLAGS := -O2 -g -fPIC -D_FORTIFY_SOURCE=2 -fstack-protector-strong
# Full RELRO for the loader, as apxs already links the module.
OPT_LDFLAGS := -Wl,-z,relro -Wl,-z,now
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_CFLAGS := -O1 -g -fPIC -fno-omit-frame-pointer $(SAN_FLAGS)

# libdatos/common is shared by both programs, libdatos/serve is what only the
# module uses, libdatos/load what only the loader uses. Each part compiles
# seeing only itself and common, so a layer cannot reach into another: the
# module sees serve's, the loader load's; only the tests see all of it.
LIBDATOS_SRC := $(wildcard libdatos/*/*.c)
LIBDATOS_HDR := $(wildcard libdatos/*/*.h)
LIBDATOS_INC := -Ilibdatos/common -Ilibdatos/serve -Ilibdatos/load
LAYER_INC_common := -Ilibdatos/common
LAYER_INC_serve := -Ilibdatos/common -Ilibdatos/serve
LAYER_INC_load := -Ilibdatos/common -Ilibdatos/load
# The flags of libdatos/<part>/x.c, from its stem <part>/x.
layer_inc = $(LAYER_INC_$(firstword $(subst /, ,$(1))))
MOD_SRC := $(wildcard mod_datos/*.c)
MOD_HDR := $(wildcard mod_datos/*.h)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_SUPPORT := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
UNIT_HDR := $(wildcard tests/unit/*.h)
FUZZ_HDR := $(wildcard tests/fuzz/*.h)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
# The jansson reference of the record validator: test code, linked by the
# unit tests (with the rest of UNIT_SUPPORT), the fuzz targets and the bench.
REF_SRC := tests/unit/dt_jansson.c

LOADER_SRC := $(wildcard loader/*.c)
LOADER_HDR := $(wildcard loader/*.h)
# Everything but main(): what unit tests and fuzz targets link.
LOADER_LIB_SRC := $(filter-out loader/loader_main.c,$(LOADER_SRC))
LOADER_OBJ := $(patsubst loader/%.c,$(BUILD)/loader-obj/%.o,$(LOADER_LIB_SRC))
SAN_LOADER_OBJ := $(patsubst loader/%.c,$(BUILD)/asan/loader-obj/%.o,$(LOADER_LIB_SRC))

OBJ := $(patsubst libdatos/%.c,$(BUILD)/obj/%.o,$(LIBDATOS_SRC))
SAN_OBJ := $(patsubst libdatos/%.c,$(BUILD)/asan/obj/%.o,$(LIBDATOS_SRC))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
SAN_UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/asan/tests/%,$(UNIT_SRC))
UNIT_SUPPORT_OBJ := $(patsubst tests/unit/%.c,$(BUILD)/tests/support/%.o,$(UNIT_SUPPORT))
SAN_UNIT_SUPPORT_OBJ := $(patsubst tests/unit/%.c,$(BUILD)/asan/tests/support/%.o,$(UNIT_SUPPORT))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: format format-check all deps build module loader unit unit-build fuzz fuzz-build fuzz-replay \
        itest test test-build test-steps run bench bench-deps bench-emulator bench-record \
        install clean

# What a user installs.
all: $(BUILD)/libdatos.a $(BUILD)/mod_datos.so $(BUILD)/datos-loader

# What the integration suites run: the programs, their ASan twins, and the
# test of the libdatos clients against the emulator.
ITEST_BUILD := all $(BUILD)/asan/mod_datos.so $(BUILD)/asan/datos-loader \
               $(BUILD)/tests/test_emulator_clients $(BUILD)/asan/tests/test_emulator_clients

# What the tests run: the sanitizer builds and the unit tests too.
test-build: $(ITEST_BUILD) $(BUILD)/asan/libdatos.a unit-build

# ---------------------------------------------------------------- deps
# Idempotent: apt runs only when a package is missing; npm only when the
# lockfile changed since the last install.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@if ! command -v npm >/dev/null; then \
	  echo "deps: npm not found; the Node.js client test of the emulator will be skipped"; \
	elif [ -f package-lock.json ] && ! cmp -s package-lock.json node_modules/.datos-lock 2>/dev/null; then \
	  echo "deps: npm ci"; \
	  npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.datos-lock; \
	fi

# ---------------------------------------------------------------- libdatos
$(BUILD)/obj/%.o: libdatos/%.c $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(OPT_CFLAGS) $(APR_INCLUDES) $(DEP_CFLAGS) $(call layer_inc,$*) -c $< -o $@

$(BUILD)/asan/obj/%.o: libdatos/%.c $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(SAN_CFLAGS) $(APR_INCLUDES) $(DEP_CFLAGS) $(call layer_inc,$*) -c $< -o $@

$(BUILD)/libdatos.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asan/libdatos.a: $(SAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

# ---------------------------------------------------------------- mod_datos
# apxs builds next to its sources, so each variant builds from its own copy.
define apxs_module
	@rm -rf $(1) && mkdir -p $(1)
	cp $(MOD_SRC) $(MOD_HDR) $(1)/
	cd $(1) && $(APXS) -c -o mod_datos.la \
	  $(foreach f,$(CSTD) $(WARN) $(2) $(addprefix -I$(CURDIR)/,$(subst -I,,$(LAYER_INC_serve))) $(DEP_CFLAGS),-Wc,$(f)) \
	  $(foreach f,$(3),-Wl,$(f)) \
	  $(notdir $(MOD_SRC)) $(CURDIR)/$(4) $(DEP_LIBS) >apxs.log 2>&1 \
	  || { cat apxs.log; exit 1; }
endef

$(BUILD)/mod_datos.so: $(MOD_SRC) $(MOD_HDR) $(BUILD)/libdatos.a
	$(call apxs_module,$(BUILD)/mod_datos,-O2 -g,,$(BUILD)/libdatos.a)
	cp $(BUILD)/mod_datos/.libs/mod_datos.so $@

$(BUILD)/asan/mod_datos.so: $(MOD_SRC) $(MOD_HDR) $(BUILD)/asan/libdatos.a
	$(call apxs_module,$(BUILD)/asan/mod_datos,-O1 -g -fno-omit-frame-pointer -fsanitize=address -fsanitize=undefined -fno-sanitize-recover=all,-fsanitize=address -fsanitize=undefined,$(BUILD)/asan/libdatos.a)
	cp $(BUILD)/asan/mod_datos/.libs/mod_datos.so $@

module: $(BUILD)/mod_datos.so $(BUILD)/asan/mod_datos.so

# ---------------------------------------------------------------- datos-loader
# The loader but main() is an archive (libloader.a), compiled once and linked
# by the program and by the unit tests.
$(BUILD)/loader-obj/%.o: loader/%.c $(LOADER_HDR) $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(OPT_CFLAGS) $(APR_INCLUDES) $(DEP_CFLAGS) $(LAYER_INC_load) -Iloader -c $< -o $@

$(BUILD)/asan/loader-obj/%.o: loader/%.c $(LOADER_HDR) $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(SAN_CFLAGS) $(APR_INCLUDES) $(DEP_CFLAGS) $(LAYER_INC_load) -Iloader -c $< -o $@

$(BUILD)/libloader.a: $(LOADER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asan/libloader.a: $(SAN_LOADER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/datos-loader: $(BUILD)/loader-obj/loader_main.o $(BUILD)/libloader.a $(BUILD)/libdatos.a
	$(CC) $^ $(DEP_LIBS) $(APR_LIBS) $(OPT_LDFLAGS) -o $@

$(BUILD)/asan/datos-loader: $(BUILD)/asan/loader-obj/loader_main.o $(BUILD)/asan/libloader.a $(BUILD)/asan/libdatos.a
	$(CC) $^ $(DEP_LIBS) $(APR_LIBS) $(SAN_FLAGS) -o $@

loader: $(BUILD)/datos-loader $(BUILD)/asan/datos-loader

# ---------------------------------------------------------------- unit tests (cmocka)
# The support files (scripted server, fixtures) are compiled once per build.
UNIT_CFLAGS = $(APR_INCLUDES) $(DEP_CFLAGS) $(CMOCKA_CFLAGS) $(LIBDATOS_INC) -Iloader -Itests/unit

$(BUILD)/tests/support/%.o: tests/unit/%.c $(UNIT_HDR) $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(UNIT_CFLAGS) -c $< -o $@

$(BUILD)/asan/tests/support/%.o: tests/unit/%.c $(UNIT_HDR) $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(SAN_CFLAGS) $(UNIT_CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/unit/%.c $(UNIT_SUPPORT_OBJ) $(UNIT_HDR) $(LOADER_HDR) $(BUILD)/libloader.a $(BUILD)/libdatos.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(UNIT_CFLAGS) \
	  $< $(UNIT_SUPPORT_OBJ) $(BUILD)/libloader.a $(BUILD)/libdatos.a $(CMOCKA_LIBS) $(UNIT_SSL_LIBS) $(DEP_LIBS) $(APR_LIBS) -o $@

$(BUILD)/asan/tests/%: tests/unit/%.c $(SAN_UNIT_SUPPORT_OBJ) $(UNIT_HDR) $(LOADER_HDR) $(BUILD)/asan/libloader.a $(BUILD)/asan/libdatos.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(SAN_CFLAGS) $(UNIT_CFLAGS) \
	  $< $(SAN_UNIT_SUPPORT_OBJ) $(BUILD)/asan/libloader.a $(BUILD)/asan/libdatos.a $(CMOCKA_LIBS) $(UNIT_SSL_LIBS) $(DEP_LIBS) $(APR_LIBS) $(SAN_FLAGS) -o $@

unit-build: $(UNIT_BIN) $(SAN_UNIT_BIN)

# Kept between builds (only pattern rules name them).
.SECONDARY: $(UNIT_SUPPORT_OBJ) $(SAN_UNIT_SUPPORT_OBJ)

# Each binary runs twice: plain, then under ASan+UBSan (any report fails).
# With make -j they run side by side, each one's output kept together (-O).
UNIT_RUNS := $(addprefix run-,$(UNIT_BIN) $(SAN_UNIT_BIN))

unit: unit-build
	@$(MAKE) --no-print-directory -O $(UNIT_RUNS)

.PHONY: $(UNIT_RUNS)
$(UNIT_RUNS): run-%: %
	@echo "== $<"
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  DATOS_TEST_TMP=$(CURDIR)/$(BUILD)/test-tmp $<

# ---------------------------------------------------------------- fuzzing (libFuzzer)
FUZZ_SECONDS ?= 60

# libdatos (and the loader's library) instrumented once, then linked into
# every target, instead of compiled again for each.
FUZZ_CFLAGS := -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJ := $(patsubst libdatos/%.c,$(BUILD)/fuzzobj/%.o,$(LIBDATOS_SRC)) \
            $(patsubst loader/%.c,$(BUILD)/fuzzobj/%.o,$(LOADER_LIB_SRC))

$(BUILD)/fuzzobj/%.o: libdatos/%.c $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	clang $(CSTD) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	  $(APR_INCLUDES) $(DEP_CFLAGS) $(call layer_inc,$*) -c $< -o $@

$(BUILD)/fuzzobj/%.o: loader/%.c $(LOADER_HDR) $(LIBDATOS_HDR)
	@mkdir -p $(@D)
	clang $(CSTD) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	  $(APR_INCLUDES) $(DEP_CFLAGS) $(LAYER_INC_load) -Iloader -c $< -o $@

$(BUILD)/fuzz/libfuzzdatos.a: $(FUZZ_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_HDR) $(REF_SRC) $(LIBDATOS_HDR) $(LOADER_HDR) $(BUILD)/fuzz/libfuzzdatos.a
	@mkdir -p $(@D)
	clang $(CSTD) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer \
	  $(APR_INCLUDES) $(DEP_CFLAGS) $(LIBDATOS_INC) -Iloader -Itests/unit $< $(REF_SRC) $(BUILD)/fuzz/libfuzzdatos.a \
	  $(DEP_LIBS) $(APR_LIBS) -o $@

fuzz-build: $(FUZZ_BIN)

# Replays every committed corpus once (part of make test).
fuzz-replay: fuzz-build
	@set -e; for f in $(FUZZ_BIN); do \
	  n=$$(basename $$f); echo "== replay $$n"; \
	  $$f -runs=0 tests/fuzz/corpus/$$n 2>&1 | tail -n 2; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done

# Fuzzes each target for FUZZ_SECONDS, growing its corpus in the build tree;
# new interesting inputs can then be minimised into tests/fuzz/corpus/.
fuzz: fuzz-build
	@set -e; for f in $(FUZZ_BIN); do \
	  n=$$(basename $$f); mkdir -p $(BUILD)/fuzz-corpus/$$n; \
	  echo "== fuzz $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz/$$n- \
	     $(BUILD)/fuzz-corpus/$$n tests/fuzz/corpus/$$n; \
	done

# ---------------------------------------------------------------- style
# .clang-format is the C style; format-check is part of make test.
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find libdatos mod_datos loader tests -name '*.[ch]')

format:
	clang-format -i $(C_FILES)

format-check:
	@clang-format --dry-run --Werror $(C_FILES) || \
	  { echo "format-check: run 'make format' (the style is .clang-format)"; exit 1; }

# ---------------------------------------------------------------- pytest suites
PYTEST := $(PYTHON) -m pytest -q -ra
# pytest-xdist workers: each has its own emulator, its own folder under
# build/test-tmp and its own block of ports (tools/httpd.py). Four per run on
# two cores: most of a test's time is spent waiting (on httpd's shutdown, the
# loader's retries, held requests), and four finish sooner than two.
PYTEST_WORKERS ?= 4
PYTEST_PAR := $(PYTEST) -n $(PYTEST_WORKERS)

itest: test-build
	$(PYTEST_PAR) tests/emulator tests/integration

test:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-steps; rc=$$?; \
	echo "make test: $$( [ $$rc -eq 0 ] && echo passed || echo FAILED ) in $$(( $$(date +%s) - start ))s wall time"; \
	exit $$rc

# What the integration suites need is built first, two jobs at a time; then,
# side by side (their tests mostly wait on sockets and timers): the integration
# suite against the release build (with the emulator's own suite), the same
# against the ASan build, and the build and run of the unit tests and fuzz
# corpora. Each pytest run has its own workers, folders and ports; their
# output goes to build/itest-*.log, shown when all are done.
test-steps: deps
	$(MAKE) --no-print-directory format-check
	$(MAKE) --no-print-directory -j2 $(ITEST_BUILD)
	@echo "$(PYTEST_PAR) tests/emulator tests/integration  >$(BUILD)/itest-release.log"
	@echo "DATOS_SANITIZE=1 $(PYTEST_PAR) tests/integration  >$(BUILD)/itest-asan.log"
	@$(PYTEST_PAR) tests/emulator tests/integration >$(BUILD)/itest-release.log 2>&1 & release=$$!; \
	DATOS_SANITIZE=1 $(PYTEST_PAR) tests/integration >$(BUILD)/itest-asan.log 2>&1 & asan=$$!; \
	$(MAKE) --no-print-directory -j2 -O unit fuzz-replay; unit=$$?; \
	wait $$release; release=$$?; wait $$asan; asan=$$?; \
	for s in release asan; do echo "== integration suite, $$s build"; cat $(BUILD)/itest-$$s.log; done; \
	test $$unit -eq 0 && test $$release -eq 0 && test $$asan -eq 0

# ---------------------------------------------------------------- benchmarks
# make bench: the release build against the trivial handler (normal and
# quick), a static file and the uncached design; the old service's bytes
# behind nginx proxy_cache and Varnish; fleet queries per window; the request
# that starts a refresh; cost at the emulator; the old service's Locust
# scenario; the loader; memory. Writes tests/bench/results.md, the plots in
# tests/bench/plots/ and the figures in docs/benchmarks.md (about 20 minutes;
# BENCH_QUICK=1 for a short run while developing).
# nginx and varnish are the peers: the bench runs its own, from configurations
# it writes under build/, on free ports of 127.0.0.1. (On a host with systemd,
# installing the packages also enables and starts Debian's services, as it
# always does; the bench neither uses nor stops them.)
BENCH_PACKAGES := gnuplot-nox time nginx varnish

bench: deps bench-deps all $(BUILD)/bench/bench_record $(BUILD)/bench/mod_bench_bytes.so
	$(PYTHON) tests/bench/bench.py

# apt-get install of the Debian packages in $(1) that are missing; $(2) names
# the target in the message.
define apt_missing
	@missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "$(2): installing" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

# Only what the benchmarks need beyond `make deps`: the plots, GNU time, the
# peers.
bench-deps:
	$(call apt_missing,$(BENCH_PACKAGES),bench-deps)

# The ceiling of the read path: a test-only handler that sends a body from
# memory (never installed).
$(BUILD)/bench/mod_bench_bytes.so: tests/bench/mod_bench_bytes.c
	@rm -rf $(BUILD)/bench/mod_bench_bytes && mkdir -p $(BUILD)/bench/mod_bench_bytes
	cp $< $(BUILD)/bench/mod_bench_bytes/
	cd $(BUILD)/bench/mod_bench_bytes && $(APXS) -c -o mod_bench_bytes.la \
	  $(foreach f,$(CSTD) $(WARN) -O2 -g,-Wc,$(f)) mod_bench_bytes.c >apxs.log 2>&1 \
	  || { cat apxs.log; exit 1; }
	cp $(BUILD)/bench/mod_bench_bytes/.libs/mod_bench_bytes.so $@

bench-emulator: deps
	$(PYTHON) tests/bench/bench_emulator.py

# The loader's validate + encode path, built like the product (-O2, the
# shipped libdatos.a), pinned to one CPU when taskset exists.
$(BUILD)/bench/bench_record: tests/bench/bench_record.c $(REF_SRC) $(LIBDATOS_HDR) $(BUILD)/libdatos.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O2 -g $(APR_INCLUDES) $(DEP_CFLAGS) $(LIBDATOS_INC) -Itests/unit $< $(REF_SRC) \
	  $(BUILD)/libdatos.a $(DEP_LIBS) $(APR_LIBS) -o $@

bench-record: deps $(BUILD)/bench/bench_record
	@if command -v taskset >/dev/null; then taskset -c 1 $(BUILD)/bench/bench_record; \
	else $(BUILD)/bench/bench_record; fi

# ---------------------------------------------------------------- docs
# The architecture picture: docs/architecture.svg is generated from
# docs/architecture.dot and both are committed, so readers need no Graphviz.
# tests/integration/test_docs.py checks that the picture matches its source.
DOCS_PACKAGES := graphviz chromium fonts-dejavu-core
.PHONY: docs docs-deps docs-status

docs: docs-deps docs/architecture.svg docs-status

# docs/status-page.png: GET /datos-status in headless Chromium, from the real
# httpd, loader and emulator (tools/status_screenshot.py). Made anew each
# time: it shows the times of the run that made it.
docs-status: deps
	$(MAKE) --no-print-directory -j2 $(BUILD)/mod_datos.so $(BUILD)/datos-loader
	$(PYTHON) tools/status_screenshot.py docs/status-page.png

docs-deps:
	$(call apt_missing,$(DOCS_PACKAGES),docs-deps)

docs/architecture.svg: docs/architecture.dot
	dot -Tsvg $< -o $@

run: deps
	$(MAKE) --no-print-directory $(BUILD)/mod_datos.so $(BUILD)/datos-loader
	$(PYTHON) tools/run_local.py

# ---------------------------------------------------------------- install
# From source (the packages are `make deb`). DESTDIR for staging trees (the
# container images). The loader's timer is installed disabled: one host per
# subscription enables it (systemctl enable --now datos-loader.timer), or
# installs the cron line from $(PREFIX)/share/datos instead.
#
# Installed as root on the machine itself (no DESTDIR), it also makes what
# the loader needs, as the datos-loader package does: the system user and
# group datos, /var/lib/datos-loader (datos, 0700), loader.conf root:datos
# 0640, and /var/cache/apache2/mod_datos for httpd's User. Otherwise it
# prints the commands that do it.
PREFIX ?= /usr/local
APACHE_MODULES = $(call cached,apxs_libexec,$(APXS) -q LIBEXECDIR)
# The unit and the cron line name /usr/bin, where the package puts the loader.
BIN_PATH_SED := sed 's|/usr/bin/datos-loader|$(PREFIX)/bin/datos-loader|g'

define install_system_setup
getent group datos >/dev/null || groupadd --system datos
getent passwd datos >/dev/null || useradd --system --gid datos --home-dir /var/lib/datos-loader --no-create-home --shell /usr/sbin/nologin --comment datos-loader datos
install -d -o datos -g datos -m 0700 /var/lib/datos-loader
chown root:datos /etc/datos/loader.conf && chmod 0640 /etc/datos/loader.conf
install -d -o www-data -g www-data -m 0750 /var/cache/apache2/mod_datos
endef
export install_system_setup

install: all
	install -d $(DESTDIR)$(APACHE_MODULES) $(DESTDIR)/etc/apache2/mods-available \
	  $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/datos $(DESTDIR)/etc/systemd/system \
	  $(DESTDIR)$(PREFIX)/share/datos $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 644 -s $(BUILD)/mod_datos.so $(DESTDIR)$(APACHE_MODULES)/mod_datos.so
	install -m 644 conf/datos.load conf/datos.conf $(DESTDIR)/etc/apache2/mods-available/
	install -m 755 -s $(BUILD)/datos-loader $(DESTDIR)$(PREFIX)/bin/datos-loader
	install -m 644 conf/loader.conf.example $(DESTDIR)/etc/datos/loader.conf.example
	test -e $(DESTDIR)/etc/datos/loader.conf || \
	  install -m 640 conf/loader.conf.example $(DESTDIR)/etc/datos/loader.conf
	$(BIN_PATH_SED) conf/datos-loader.service >$(DESTDIR)/etc/systemd/system/datos-loader.service
	install -m 644 conf/datos-loader.timer $(DESTDIR)/etc/systemd/system/
	$(BIN_PATH_SED) conf/datos-loader.cron >$(DESTDIR)$(PREFIX)/share/datos/datos-loader.cron
	install -m 644 man/datos-loader.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 man/datos.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -d $(DESTDIR)$(PREFIX)/share/datos/prometheus
	install -m 644 conf/prometheus/datos-rules.yml conf/prometheus/datos-rules.test.yml \
	  $(DESTDIR)$(PREFIX)/share/datos/prometheus/
	install -d $(DESTDIR)$(PREFIX)/share/datos/grafana
	install -m 644 conf/grafana/datos.json $(DESTDIR)$(PREFIX)/share/datos/grafana/
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "install: the user datos, /var/lib/datos-loader, loader.conf's group, /var/cache/apache2/mod_datos"; \
	  sh -ec "$$install_system_setup"; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	else \
	  echo "install: on the machine that runs them, as root, create what the loader and the module need:"; \
	  echo "$$install_system_setup" | sed 's/^/    /'; \
	fi
	@echo "install: then a2enmod datos; write /etc/datos/loader.conf; enable ONE scheduler per subscription (docs/packages.md)"

clean:
	rm -rf $(BUILD)

# ================================================================ packages
# Debian packages, the install test in a booted Debian, the container
# images. None of these is part of `make test` (each needs tools and
# minutes make test has not got); make test runs their offline checks
# (tests/integration/test_packaging.py, test_docker_files.py).
#
#   make deb            build/deb/libapache2-mod-datos_*.deb, datos-loader_*.deb
#                       (dpkg-buildpackage -b from debian/), then lintian
#   make test-install   both packages installed with apt in a Debian
#                       bookworm booted by systemd-nspawn
#                       (tests/packaging/install_test.py)
#   make test-images    the three images built with podman from a debootstrap
#                       base and run together as docker/compose.yaml does
#                       (tests/packaging/images_test.py)
.PHONY: deb deb-deps test-install test-install-deps test-images test-images-deps

# Only what each target needs beyond `make deps`.
DEB_BUILD_PACKAGES := debhelper dpkg-dev lintian apache2-dev libapr1-dev libaprutil1-dev \
  libcurl4-openssl-dev libjansson-dev libssl-dev zlib1g-dev pkg-config build-essential
INSTALL_TEST_PACKAGES := debootstrap systemd-container util-linux python3
IMAGES_TEST_PACKAGES := podman buildah runc catatonit debootstrap python3-yaml binutils

define apt_install_missing
	@missing=$$(for p in $(2); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "$(1): installing" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deb-deps:
	$(call apt_install_missing,deb-deps,$(DEB_BUILD_PACKAGES))

# dpkg-buildpackage writes next to the source tree, so it runs on a copy in
# build/deb-src (the files git knows, plus new ones it does not ignore).
DEB_SRC := $(BUILD)/deb-src/datos
deb: deb-deps
	@rm -rf $(BUILD)/deb-src $(BUILD)/deb && mkdir -p $(DEB_SRC) $(BUILD)/deb/dbgsym
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git ls-files -z --cached --others --exclude-standard | \
	    tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C $(DEB_SRC) -xf -; \
	else \
	  tar --exclude=./build --exclude=./node_modules --exclude=./.git -cf - . | tar -C $(DEB_SRC) -xf -; \
	fi
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc -j2 >../build.log 2>&1 \
	  || { tail -n 40 ../build.log; exit 1; }
	@grep -E '^(dpkg-deb|dpkg-buildpackage: info: (source version|binary-only))' $(BUILD)/deb-src/build.log
	cp $(BUILD)/deb-src/*-dbgsym_*.deb $(BUILD)/deb/dbgsym/
	cp $$(ls $(BUILD)/deb-src/*.deb | grep -v -- -dbgsym_) $(BUILD)/deb/
	@ls -l $(BUILD)/deb/*.deb
	lintian --fail-on error,warning --info --display-info $(BUILD)/deb-src/*.changes

test-install-deps:
	$(call apt_install_missing,test-install-deps,$(INSTALL_TEST_PACKAGES))

# 3-5 minutes with make deb and the root filesystem cached in build/rootfs/,
# about 3 more on a fresh clone (debootstrap); too long for make test's budget.
test-install: deb test-install-deps
	@start=$$(date +%s); \
	$(PYTHON) tests/packaging/install_test.py; rc=$$?; \
	echo "make test-install: $$( [ $$rc -eq 0 ] && echo passed || echo FAILED ) in $$(( $$(date +%s) - start ))s wall time"; \
	exit $$rc

test-images-deps:
	$(call apt_install_missing,test-images-deps,$(IMAGES_TEST_PACKAGES))

# About 10 minutes on a fresh machine (debootstrap, three builds), 2-4 with the
# base and the build cache kept in build/images-test/ (overlay storage).
test-images: test-images-deps
	@start=$$(date +%s); \
	$(PYTHON) tests/packaging/images_test.py; rc=$$?; \
	echo "make test-images: $$( [ $$rc -eq 0 ] && echo passed || echo FAILED ) in $$(( $$(date +%s) - start ))s wall time"; \
	exit $$rc
