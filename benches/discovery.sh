#!/usr/bin/env bash
# ECS discovery with 500 tasks in a service, against the ECS API emulator (tests/ecs/): the API
# calls one refresh makes when nothing changed, and how long the refresh that sees a task start or
# stop takes (the refresh interval excluded). The emulator (moto, Python) answers far slower than
# ECS, so the times are an upper bound on seawall's part; the call counts are exact.
#
#     bash benches/discovery.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tests/ecs/setup.sh
cargo test --release --test ecs -- --ignored --nocapture discovery_benchmark 2>&1 |
    grep -E '^(tasks:|healthy_tasks_only=|test result)'
