/**
 * The box's network settings as the console changes them: DHCP (with DNS and NTP from it), or a
 * static address with gateway, DNS and NTP servers, written as systemd-networkd's file for the LAN
 * port (the one systemd/network/50-wired.network ships). Pure: parsing and the file's text.
 */
import { isIP } from 'node:net';

export type NetworkConfig = { mode: 'dhcp' } | { mode: 'static'; address: string; prefix: number; gateway: string; dns: string[]; ntp: string[] };

export class NetworkUsage extends Error {}

const HOST = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * `network static ADDRESS/PREFIX GATEWAY [dns SERVER...] [ntp SERVER...]`: every value is checked,
 * and a refusal names it and says what to give.
 */
export function parseStatic(args: string[]): NetworkConfig {
  const usage = 'network static ADDRESS/PREFIX GATEWAY [dns SERVER ...] [ntp SERVER ...], e.g. network static 192.168.10.2/24 192.168.10.1 dns 192.168.10.1';
  if (args.length < 2) throw new NetworkUsage(`usage: ${usage}`);
  const [cidr, gateway, ...rest] = args as [string, string, ...string[]];
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!m) throw new NetworkUsage(`${JSON.stringify(cidr)} is not ADDRESS/PREFIX (e.g. 192.168.10.2/24)`);
  const address = m[1]!;
  const prefix = Number(m[2]);
  const family = isIP(address);
  if (family === 0) throw new NetworkUsage(`${JSON.stringify(address)} is not an IPv4 or IPv6 address`);
  if (prefix < 1 || prefix > (family === 4 ? 32 : 128)) throw new NetworkUsage(`the prefix /${prefix} does not fit an IPv${family} address (1 to ${family === 4 ? 32 : 128})`);
  if (isIP(gateway) !== family) throw new NetworkUsage(`the gateway ${JSON.stringify(gateway)} is not an IPv${family} address like ${address}`);
  const dns: string[] = [];
  const ntp: string[] = [];
  let list: string[] | null = null;
  for (const w of rest) {
    if (w === 'dns') list = dns;
    else if (w === 'ntp') list = ntp;
    else if (!list) throw new NetworkUsage(`${JSON.stringify(w)}: put "dns" or "ntp" before the servers; usage: ${usage}`);
    else if (list === dns && isIP(w) === 0) throw new NetworkUsage(`the DNS server ${JSON.stringify(w)} is not an IP address`);
    else if (list === ntp && isIP(w) === 0 && !HOST.test(w)) throw new NetworkUsage(`the NTP server ${JSON.stringify(w)} is neither an IP address nor a host name`);
    else list.push(w);
  }
  if (dns.length > 3) throw new NetworkUsage('at most 3 DNS servers');
  if (ntp.length > 4) throw new NetworkUsage('at most 4 NTP servers');
  return { mode: 'static', address, prefix, gateway, dns, ntp };
}

/** The text of /etc/systemd/network/50-wired.network for `c`. */
export function networkFile(c: NetworkConfig): string {
  const head = ['# The appliance\'s LAN port, as set on the maintenance console (docs/console.md).', '[Match]', 'Name=en* eth*', '', '[Network]'];
  if (c.mode === 'dhcp') return [...head, 'DHCP=yes', '', '[DHCPv4]', 'UseDNS=yes', 'UseNTP=yes', 'UseHostname=no', '', '[DHCPv6]', 'UseDNS=yes', 'UseNTP=yes', ''].join('\n');
  return [...head, `Address=${c.address}/${c.prefix}`, `Gateway=${c.gateway}`, ...c.dns.map((d) => `DNS=${d}`), ...c.ntp.map((n) => `NTP=${n}`), ''].join('\n');
}

export function describeNetwork(c: NetworkConfig): string {
  return c.mode === 'dhcp' ? 'DHCP (address, DNS and NTP from the DHCP server)' : `static ${c.address}/${c.prefix}, gateway ${c.gateway}${c.dns.length ? `, DNS ${c.dns.join(' ')}` : ', no DNS server'}${c.ntp.length ? `, NTP ${c.ntp.join(' ')}` : ''}`;
}
