# netlua: one plain, non-recursive Makefile.
#   make              build ./netlua
#   make deps         install missing Debian packages (apt-get as root)
#   make test         deps + build + run the suite under prove
#   make SANITIZE=1 test       the same with ASan+UBSan (build/asan/netlua)
#   make SANITIZE=thread test  the same with TSan      (build/tsan/netlua)
#   make fuzz [FUZZ_SECONDS=60]  fuzz the HTTP request parser (libFuzzer)
#   make demo | bench | install PREFIX=/usr/local | clean

# ---- settings -------------------------------------------------------------
CC       ?= cc
PREFIX   ?= /usr/local
PKGS     := lua5.4 lua5.4-cjson lua5.4-filesystem libcurl openssl
WERROR   ?= $(if $(CI),-Werror)
SANITIZE ?=

LIBDIR_MA  := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
LUA_A      := /usr/lib/$(LIBDIR_MA)/liblua5.4.a
STATIC_LUA := $(LUA_A) /usr/lib/$(LIBDIR_MA)/liblua5.4-cjson.a \
              /usr/lib/$(LIBDIR_MA)/liblua5.4-filesystem.a

ifeq ($(SANITIZE),1)
  OUT := build/asan
  SAN_FLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined,float-cast-overflow
  SAN_LDFLAGS := -fsanitize=address,undefined,float-cast-overflow
  BIN := $(OUT)/netlua
else ifeq ($(SANITIZE),thread)
  OUT := build/tsan
  SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
  SAN_LDFLAGS := -fsanitize=thread
  BIN := $(OUT)/netlua
else
  OUT := build/release
  BIN := netlua
endif

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-align -Wstrict-prototypes \
        -Wmissing-prototypes -Wwrite-strings -Wformat=2 -Wundef -Wvla \
        -Wno-unused-parameter
CFLAGS   ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(WERROR) \
              $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(SAN_FLAGS) \
              -Iruntime -I$(OUT) -MMD -MP
# libcurl and OpenSSL are not linked: runtime/curlload.c dlopens libcurl on
# the first HTTP transfer, runtime/ossload.c libcrypto/libssl on the first
# `require "crypto"`/`require "ssl"` or HTTPS server (only their headers are
# used, through pkg-config --cflags above).
LDLIBS   := $(STATIC_LUA) -lpthread -lm -ldl
LDFLAGS  ?=
ALL_LDFLAGS := -Wl,-E $(SAN_LDFLAGS) $(LDFLAGS)


# ---- sources --------------------------------------------------------------
RUNTIME_SRC  := $(wildcard runtime/*.c)
BINDINGS_SRC := $(wildcard bindings/*.c)
LUA_HALVES   := $(wildcard bindings/*.lua runtime/*.lua)
# The lab's tools (netlua -m NAME) and the scripts' modules they use.
LAB_LUA      := $(wildcard lab/*.lua) scripts/cli.lua scripts/chatroom.lua scripts/imageapi.lua
GEN_SRC      := $(OUT)/embedded.c
OBJS := $(patsubst %.c,$(OUT)/%.o,$(RUNTIME_SRC) $(BINDINGS_SRC)) $(OUT)/embedded.o $(OUT)/lab_embedded.o

# ---- build ----------------------------------------------------------------
.PHONY: all deps test demo bench bench-deps fuzz install clean
all: $(BIN)

$(BIN): $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

GEN_HEADERS := $(OUT)/errnames.h $(OUT)/curlnames.h $(OUT)/osslfuncs.h $(OUT)/osslcalls.h
$(OUT)/%.o: %.c $(GEN_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OUT)/embedded.o $(OUT)/lab_embedded.o: $(OUT)/%.o: $(OUT)/%.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The Lua halves are embedded as bytecode made by our own liblua (a build
# tool, never sanitized: it only has to produce the same bytes).
$(GEN_SRC): $(LUA_HALVES) tools/embed.sh $(OUT)/luadump
	@mkdir -p $(OUT)
	sh tools/embed.sh -d $(OUT)/luadump $(LUA_HALVES) > $@.tmp && mv $@.tmp $@

$(OUT)/lab_embedded.c: $(LAB_LUA) tools/embed.sh $(OUT)/luadump
	@mkdir -p $(OUT)
	sh tools/embed.sh -d $(OUT)/luadump -t nl_lab $(LAB_LUA) > $@.tmp && mv $@.tmp $@

$(OUT)/luadump: tools/luadump.c
	@mkdir -p $(OUT)
	$(CC) -std=c11 $(WARN) -O2 $(WERROR) $(shell pkg-config --cflags lua5.4 2>/dev/null) \
	  -o $@ $< $(LUA_A) -lm -ldl

$(OUT)/errnames.h: tools/errnames.sh
	@mkdir -p $(OUT)
	sh tools/errnames.sh "$(CC)" > $@.tmp && mv $@.tmp $@

$(OUT)/curlnames.h: tools/curlnames.sh
	@mkdir -p $(OUT)
	sh tools/curlnames.sh "$(CC)" > $@.tmp && mv $@.tmp $@

# ossl.h's two halves, from one names list: the table's entries, and the
# macros that turn each call into a call through it.
$(OUT)/osslfuncs.h $(OUT)/osslcalls.h: $(OUT)/ossl%.h: runtime/ossl.names tools/osslnames.sh
	@mkdir -p $(OUT)
	sh tools/osslnames.sh $* runtime/ossl.names > $@.tmp && mv $@.tmp $@

-include $(OBJS:.o=.d)

# ---- set-up, tests, demo --------------------------------------------------
# The browser tests (test_gallery, test_webchat) drive headless Chromium;
# without it they skip; so does tests/test_trace2pcap.lua without tcpdump,
# which reads trace2pcap's files back. Node's ws, a WebSocket peer of the
# tests (they skip without it), goes into build/npm (ignored by git), where
# they find it.
BROWSER_PKGS := chromium-headless-shell python3-websockets
# A DNS server on loopback for the tests of netlua -m dns (they skip without it).
DNS_PKGS := dnsmasq-base
NPM_DIR := build/npm
deps:
	@sh tools/deps.sh
	@sh tools/deps.sh --optional "the browser tests" $(BROWSER_PKGS)
	@sh tools/deps.sh --optional "the dns tool's tests" $(DNS_PKGS)
	@sh tools/deps.sh --optional "the trace2pcap test" tcpdump
	@[ -d $(NPM_DIR)/node_modules/ws ] || ! command -v npm > /dev/null 2>&1 || \
	  npm install --silent --no-audit --no-fund --prefix $(NPM_DIR) ws > /dev/null || \
	  echo "(npm install ws failed: the Node WebSocket tests will skip)" >&2

TESTS ?= $(sort $(wildcard tests/test_*.lua))
# A test file that runs longer than FILE_LIMIT seconds is killed and fails,
# so one hang costs CI one file, not its whole time; --timer shows each
# file's time.
FILE_LIMIT ?= 900
test: deps
	@$(MAKE) --no-print-directory all
	NETLUA=$(CURDIR)/$(BIN) prove --timer --exec 'timeout -k 10 $(FILE_LIMIT) $(CURDIR)/$(BIN)' $(PROVE_FLAGS) $(TESTS)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh ./$(BIN)

# ---- benchmark: netlua against its peers (bench/README.md) ----------------
BENCH_BINS := build/bench/loadgen build/bench/cserver build/bench/cthreads
bench: deps bench-deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	bash bench/run.sh $(CURDIR)/$(BIN)

BENCH_PKGS := nodejs lua5.4 lua-socket nginx-light wrk curl python3 python3-requests python3-websockets util-linux
bench-deps:
	@sh tools/deps.sh --optional "make bench" $(BENCH_PKGS)

build/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g $(WERROR) -o $@ $< -lpthread

# ---- fuzzing: bounded runs anyone can start (tests/fuzz/) ------------------
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
fuzz: build/fuzz/fuzz_httpparse
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_httpparse -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  build/fuzz/corpus tests/fuzz/http_seeds

build/fuzz/fuzz_httpparse: tests/fuzz/fuzz_httpparse.c runtime/httpparse.c runtime/buf.c
	@sh tools/deps.sh clang
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Iruntime -o $@ $^

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/netlua

clean:
	rm -rf build netlua
