//! Setting up the tap ports: in inline mode a kernel bridge of the two
//! ports, configured as a transparent tap that says nothing on the wire; in
//! span mode the ports alone. Done over rtnetlink, procfs and the ethtool
//! ioctl, never by running `ip` or `ethtool`.
//!
//! Nothing here is undone on exit: the bridge keeps forwarding whether
//! pitapd runs or not.

use std::io;

use crate::config::{Config, Mode};
use crate::sys::ethtool;
use crate::sys::netlink::{BridgeOptions, LinkInfo, Rtnl};

/// Flooding on two ports is forwarding: learning off, STP off, snooping off,
/// 802.1X EAPOL (bit 3) and LLDP (bit 14) forwarded.
pub const TAP_BRIDGE: BridgeOptions = BridgeOptions {
    stp: false,
    ageing_time_cs: 0,
    multicast_snooping: false,
    group_fwd_mask: 0x4008,
};

/// What setup made of the ports.
#[derive(Debug, Clone)]
pub struct TapPorts {
    /// Interface names of port A and (if any) port B.
    pub names: Vec<String>,
    /// MAC addresses of the tap itself (the bridge's): frames to or from
    /// them are the tap's own traffic.
    pub own_macs: Vec<[u8; 6]>,
    /// Whether an existing bridge was adopted as it was.
    pub adopted: bool,
}

fn context(what: &str, e: io::Error) -> String {
    format!("{what}: {e}")
}

/// Writes a value to a procfs/sysfs knob if it exists (a kernel without IPv6
/// or without br_netfilter has no such file, and needs no such setting).
fn write_knob(path: &str, value: &str) -> Result<(), String> {
    match std::fs::write(path, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// No link-local address, DAD, MLD or router solicitation: must happen
/// before the interface comes up.
fn disable_ipv6(ifname: &str) -> Result<(), String> {
    write_knob(
        &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        "1",
    )
}

fn find(rtnl: &mut Rtnl, key: &str, name: &str) -> Result<LinkInfo, String> {
    rtnl.link(name)
        .map_err(|e| context(name, e))?
        .ok_or_else(|| format!("{key}: no interface named {name:?}"))
}

/// Prepares one port: IPv6 off, GRO off (it merges frames and distorts
/// packet counts), up.
fn prepare_port(rtnl: &mut Rtnl, port: &LinkInfo) -> Result<(), String> {
    disable_ipv6(&port.name)?;
    ethtool::set_gro(&port.name, false)
        .or_else(|e| {
            // Devices without GRO support have nothing to switch off.
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| context(&format!("{}: switching GRO off", port.name), e))?;
    rtnl.set_up(port.index, true)
        .map_err(|e| context(&format!("{}: up", port.name), e))
}

/// A dedicated management port for the uplink stack: the kernel must stay
/// silent on it (no IPv6 link-local, no address), but the link must be up,
/// and on the appliance nothing else brings it up.
pub fn prepare_uplink_port(ifname: &str) -> Result<(), String> {
    let mut rtnl = Rtnl::open().map_err(|e| context("netlink", e))?;
    let port = find(&mut rtnl, "uplink.stack.interface", ifname)?;
    disable_ipv6(&port.name)?;
    if port.up {
        return Ok(());
    }
    rtnl.set_up(port.index, true)
        .map_err(|e| context(&format!("{}: up", port.name), e))
}

pub fn setup(config: &Config) -> Result<TapPorts, String> {
    let mut rtnl = Rtnl::open().map_err(|e| context("netlink", e))?;
    let a = find(&mut rtnl, "tap.port_a", &config.tap.port_a)?;
    let b = match &config.tap.port_b {
        Some(name) => Some(find(&mut rtnl, "tap.port_b", name)?),
        None => None,
    };
    // The kernel's bridge netfilter hooks would pass bridged frames through
    // iptables: never wanted on a tap. Built in on some kernels; we never
    // load the module, only switch the hooks off where they exist.
    for hook in ["iptables", "ip6tables", "arptables"] {
        write_knob(&format!("/proc/sys/net/bridge/bridge-nf-call-{hook}"), "0")?;
    }
    let mut names = vec![a.name.clone()];
    names.extend(b.iter().map(|b| b.name.clone()));
    match (config.tap.mode, b) {
        (Mode::Span, b) => {
            prepare_port(&mut rtnl, &a)?;
            if let Some(b) = &b {
                prepare_port(&mut rtnl, b)?;
            }
            Ok(TapPorts {
                names,
                own_macs: Vec::new(),
                adopted: false,
            })
        }
        (Mode::Inline, Some(b)) => setup_bridge(&mut rtnl, &config.tap.bridge, a, b, names),
        (Mode::Inline, None) => Err("tap.port_b: inline mode needs two ports".into()),
    }
}

fn setup_bridge(
    rtnl: &mut Rtnl,
    bridge_name: &str,
    a: LinkInfo,
    b: LinkInfo,
    names: Vec<String>,
) -> Result<TapPorts, String> {
    let existing = rtnl
        .link(bridge_name)
        .map_err(|e| context(bridge_name, e))?;
    if let Some(br) = &existing {
        if br.kind.as_deref() != Some("bridge") {
            return Err(format!(
                "tap.bridge: {bridge_name:?} exists and is not a bridge"
            ));
        }
    }
    let adopted = existing
        .as_ref()
        .is_some_and(|br| a.master == Some(br.index) && b.master == Some(br.index));
    if !adopted {
        // IPv6 must be off before a port comes up again, so ports that are
        // up go down for the change (a moment without forwarding, once).
        for port in [&a, &b] {
            if port.up {
                rtnl.set_up(port.index, false)
                    .map_err(|e| context(&format!("{}: down", port.name), e))?;
            }
            disable_ipv6(&port.name)?;
        }
        if existing.is_none() {
            rtnl.create_bridge(bridge_name, &TAP_BRIDGE)
                .map_err(|e| context(&format!("creating bridge {bridge_name}"), e))?;
        }
    }
    let br = find(rtnl, "tap.bridge", bridge_name)?;
    disable_ipv6(bridge_name)?;
    rtnl.configure_bridge(br.index, &TAP_BRIDGE)
        .map_err(|e| context(&format!("configuring bridge {bridge_name}"), e))?;
    for port in [&a, &b] {
        if port.master != Some(br.index) {
            rtnl.set_master(port.index, br.index)
                .map_err(|e| context(&format!("adding {} to {bridge_name}", port.name), e))?;
        }
        prepare_port(rtnl, port)?;
    }
    rtnl.set_up(br.index, true)
        .map_err(|e| context(&format!("{bridge_name}: up"), e))?;
    // The bridge takes a port's MAC when ports join: read it now.
    let br = find(rtnl, "tap.bridge", bridge_name)?;
    Ok(TapPorts {
        names,
        own_macs: br.mac.into_iter().collect(),
        adopted,
    })
}
