//! Whether the tap is whole: in inline mode the bridge exists, is up, and
//! has every tap port in it, each up. The watchdog is fed and the bypass
//! board's relays held only while this holds (and the loop turns, which
//! each of them sees by being called).

use crate::config::{Config, Mode};
use crate::sys::netlink::Rtnl;

pub struct BridgeCheck {
    rtnl: Option<Rtnl>,
    bridge: Option<(String, Vec<String>)>,
}

impl BridgeCheck {
    pub fn new(config: &Config) -> BridgeCheck {
        let bridge = (config.tap.mode == Mode::Inline)
            .then(|| (config.tap.bridge.clone(), config.tap.ports()));
        BridgeCheck {
            rtnl: bridge.as_ref().and_then(|_| Rtnl::open().ok()),
            bridge,
        }
    }

    /// Whether it can tell at all (span mode needs no netlink; inline mode
    /// does, and without it the bridge never looks whole).
    pub fn can_look(&self) -> bool {
        self.bridge.is_none() || self.rtnl.is_some()
    }

    /// Span mode has no bridge to lose: whole. A netlink socket that could
    /// not be opened cannot tell: not whole.
    pub fn whole(&mut self) -> bool {
        let Some((bridge, ports)) = &self.bridge else {
            return true;
        };
        let Some(rtnl) = &mut self.rtnl else {
            return false;
        };
        let Ok(Some(br)) = rtnl.link(bridge) else {
            return false;
        };
        br.up
            && ports
                .iter()
                .all(|p| matches!(rtnl.link(p), Ok(Some(l)) if l.master == Some(br.index) && l.up))
    }
}
