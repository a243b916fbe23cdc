#!/usr/bin/env bash
# Installs the Debian packages the lab, the tests and the PDF report need. Idempotent; root only.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  iproute2 openssh-server openssh-client nftables iptables conntrack procps psmisc util-linux
  samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user ldb-tools smbclient
  poppler-utils libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 fonts-dejavu-core
  tmux make
  # later waves: real peers in the tests (Kerberos build headers, Alertmanager, PostgreSQL, RabbitMQ, Chromium, SMTP via
  # aiosmtpd from PyPI), sudo/doas for non-root service accounts on lab hosts
  libkrb5-dev prometheus-alertmanager postgresql rabbitmq-server chromium chromium-driver sudo opendoas
  zsh fish  # the completion scripts are parsed by the real shells in the tests
  firewalld ufw  # issue 14: their reloads are tested on lab hosts (never started on the machine itself)
)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "install-system: need root to apt-get install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian enables the system sshd/samba units on install; the lab runs its own copies only.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now ssh samba-ad-dc smbd nmbd winbind prometheus-alertmanager postgresql rabbitmq-server >/dev/null 2>&1 || true
fi
