//! The event loop: datapath events, timers, trackers and signals in; the
//! state machines' actions out, executed in order.

pub mod timers;
