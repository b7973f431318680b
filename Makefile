# Two commands on a fresh machine: `make dev` runs the worker locally, `make test` runs every test.
# Both install what they need first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
export CLOUDFLARE_CF_FETCH_ENABLED := false
export WRANGLER_SEND_METRICS := false
export WRANGLER_SEND_ERROR_REPORTS := false
# Node 22 from npm (package.json): wrangler and miniflare need Node >= 22.12, whatever the machine has.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup build dev migrate-local seed-local mock test lint test-native test-unit test-integration test-browser check-config-docs check-deploy bench fuzz fuzz-smoke deploy deploy-dry-run

setup:
	@bash scripts/setup.sh

build: setup
	bash scripts/build.sh

.dev.vars:
	cp .dev.vars.example .dev.vars

# wrangler runs the [build] command of wrangler.toml (setup + build) before serving, with the
# local database (.wrangler/state) migrated first.
dev: setup .dev.vars migrate-local seed-local
	npx wrangler dev --ip 127.0.0.1 --port 8787

# A week of plausible traffic in an empty local ledger (scripts/seed-dev.mjs), for the console's 数据.
seed-local: setup migrate-local
	node scripts/seed-dev.mjs

# migrations/ applied to the local D1 database: each file in one transaction; a file that fails
# changes nothing and is named.
migrate-local: setup
	npx wrangler d1 migrations apply WECHAT_DB --local

# Build, migrate the D1 database and deploy (scripts/deploy.sh: the first deploy creates the
# KV namespace and the database). Needs `npx wrangler login` once, and the secrets (README).
deploy: setup
	bash scripts/deploy.sh

# The WeChat API mock for local admin API calls (WECHAT_API_BASE in .dev.vars.example points here).
mock: setup
	node tests/support/mock-wechat.mjs 8788

test: setup lint test-native test-unit build check-deploy test-integration test-browser

lint: check-config-docs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --target wasm32-unknown-unknown -- -D warnings
	# The fuzz harnesses, built with the protocol crate as cargo-fuzz builds it (--cfg fuzzing), on stable.
	RUSTFLAGS="--cfg fuzzing" cargo check --manifest-path fuzz/Cargo.toml --all-targets --locked

test-native:
	cargo test --workspace

# The JS side of the wire format, against the golden answers the Rust side encodes.
test-unit:
	node --test --test-force-exit 'tests/unit/*.test.mjs'

# Every worker's log lines of the whole suite are kept under artifacts/worker-logs and checked
# for secrets afterwards.
test-integration:
	rm -rf artifacts/worker-logs && mkdir -p artifacts/worker-logs
	WORKER_LOG_DIR=$(CURDIR)/artifacts/worker-logs node --test --test-force-exit --test-concurrency=1 'tests/integration/*.test.mjs'
	node tests/support/no-secrets.mjs artifacts/worker-logs

# The operator console in Chromium against the built worker and its static assets, WeChat mocked;
# screenshots in artifacts/console/.
test-browser:
	@bash scripts/setup.sh --browser
	node --test --test-force-exit --test-concurrency=1 'tests/browser/*.test.mjs'

check-config-docs:
	@bash scripts/check-config-docs.sh

# The deploy configuration, checked offline with `wrangler deploy --dry-run`.
check-deploy: build
	bash scripts/check-deploy.sh

deploy-dry-run: build
	bash scripts/bundle-size.sh

# The benchmark table and its budgets (not part of `make test`: numbers need a quiet machine).
bench: build
	node perf/report.mjs

# Every fuzz target for ~30 s (needs the nightly toolchain; installs cargo-fuzz if missing).
fuzz-smoke:
	bash fuzz/run.sh 30 2

# The long run: FUZZ_SECONDS per target (default 900), two at a time.
fuzz:
	bash fuzz/run.sh $${FUZZ_SECONDS:-900} 2
