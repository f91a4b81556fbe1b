# The dashboard's end-to-end test (internal/dashboard TestDashboardFailover)
# drives the page in Debian's chromium through playwright-core (pinned in
# hack/dashboard/package.json, installed into the git-ignored
# hack/dashboard/node_modules; no browser download: executablePath).
# Included by the Makefile; `make test` runs it through `unit`.
DASHBOARD_DIR := $(CURDIR)/hack/dashboard

.PHONY: dashboard-deps
dashboard-deps: $(DASHBOARD_DIR)/node_modules/playwright-core/package.json
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "dashboard-deps: installing chromium"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "dashboard-deps: chromium is missing; run as root: apt-get install chromium" >&2; exit 1; \
		fi; \
	fi

$(DASHBOARD_DIR)/node_modules/playwright-core/package.json: $(DASHBOARD_DIR)/package.json
	@if ! command -v npm >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "dashboard-deps: installing nodejs npm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	cd $(DASHBOARD_DIR) && npm install --no-audit --no-fund --no-package-lock --silent
	@touch $@

unit: dashboard-deps
