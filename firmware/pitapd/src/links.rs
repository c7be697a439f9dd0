//! Link state of the tap ports (carrier, speed), and optional link-failure
//! propagation: when one port loses carrier the other is taken down, so the
//! devices on both sides see the failure, as commercial taps do.

use crate::sys::netlink::Rtnl;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    pub name: String,
    pub carrier: bool,
    pub admin_up: bool,
    /// Mbit/s, when the driver knows.
    pub speed_mbps: Option<u32>,
}

pub struct LinkMonitor {
    rtnl: Rtnl,
    pub states: Vec<LinkState>,
    propagate: bool,
    /// The port pitapd took down because the other lost carrier.
    forced_down: Option<usize>,
    pub propagation_events: u64,
}

fn speed(name: &str) -> Option<u32> {
    // sysfs reports -1 (or fails) when the speed is unknown.
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/speed")).ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s > 0)
        .map(|s| s as u32)
}

impl LinkMonitor {
    pub fn new(names: &[String], propagate: bool) -> std::io::Result<Self> {
        let mut m = LinkMonitor {
            rtnl: Rtnl::open()?,
            states: names
                .iter()
                .map(|n| LinkState {
                    name: n.clone(),
                    ..LinkState::default()
                })
                .collect(),
            propagate: propagate && names.len() == 2,
            forced_down: None,
            propagation_events: 0,
        };
        m.refresh();
        Ok(m)
    }

    /// Reads the current state of every port; a port that cannot be read is
    /// shown without carrier.
    pub fn refresh(&mut self) {
        for state in &mut self.states {
            let link = self.rtnl.link(&state.name).ok().flatten();
            state.carrier = link.as_ref().and_then(|l| l.carrier).unwrap_or(false);
            state.admin_up = link.as_ref().is_some_and(|l| l.up);
            state.speed_mbps = if state.carrier {
                speed(&state.name)
            } else {
                None
            };
        }
        if self.propagate {
            self.propagate_failures();
        }
    }

    fn set_up(&mut self, port: usize, up: bool) {
        let name = self.states[port].name.clone();
        if let Ok(Some(link)) = self.rtnl.link(&name) {
            if let Err(e) = self.rtnl.set_up(link.index, up) {
                eprintln!(
                    "pitapd: link propagation: {name} {}: {e}",
                    if up { "up" } else { "down" }
                );
            }
        }
    }

    fn propagate_failures(&mut self) {
        match self.forced_down {
            None => {
                for lost in 0..2 {
                    let other = 1 - lost;
                    if !self.states[lost].carrier && self.states[other].admin_up {
                        eprintln!(
                            "pitapd: {} lost carrier: taking {} down",
                            self.states[lost].name, self.states[other].name
                        );
                        self.set_up(other, false);
                        self.forced_down = Some(other);
                        self.propagation_events += 1;
                        break;
                    }
                }
            }
            Some(down) => {
                let watched = 1 - down;
                if self.states[watched].carrier {
                    eprintln!(
                        "pitapd: {} has carrier again: bringing {} up",
                        self.states[watched].name, self.states[down].name
                    );
                    self.set_up(down, true);
                    self.forced_down = None;
                }
            }
        }
    }

    /// Brings back a port that propagation took down (on a clean exit).
    pub fn restore(&mut self) {
        if let Some(down) = self.forced_down.take() {
            self.set_up(down, true);
        }
    }
}
