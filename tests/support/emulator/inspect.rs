//! What a test reads back from a running [`Emulator`]: the Runtime API calls, telemetry
//! deliveries, handed-out events, the subscription and registration, the child's output and exit
//! status, and waits for the exit or for a line of output.

use std::time::Duration;

use serde_json::Value;

use super::lifecycle::{Emulator, REAP_TIMEOUT};
use super::types::{Delivery, RecordedCall, Registration};

impl Emulator {
    /// Waits until the child has exited; returns [`Emulator::exit_status`].
    pub async fn wait_for_exit(&self, timeout: Duration) -> Result<i32, String> {
        let code = self
            .shared
            .wait_for("the extension to exit", timeout, |st| st.exit)
            .await?;
        // Everything it wrote before exiting is read before this returns.
        let _ = self
            .shared
            .wait_for("the output to be read", REAP_TIMEOUT, |st| {
                (st.output_closed >= 2).then_some(())
            })
            .await;
        Ok(code)
    }

    /// Waits until the child's output contains `needle`.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let what = format!("output containing {needle:?}");
        self.shared
            .wait_for(&what, timeout, |st| {
                st.output.contains(needle).then_some(())
            })
            .await
    }

    /// Forgets the recorded telemetry POSTs ([`Emulator::deliveries`]), delivered events
    /// ([`Emulator::delivered_events`]), handed-out events and runtimeDone acknowledgements, so
    /// that long soak runs keep the emulator's own memory flat. Call it between invocations.
    /// The Runtime API calls ([`Emulator::calls`]; a pending `/next` still refers to its entry)
    /// and the `/next` times (which [`Emulator::invoke`] counts) are kept.
    pub fn clear_history(&self) {
        self.shared.update(|st| {
            st.deliveries.clear();
            st.delivered_events.clear();
            st.handed_out.clear();
            st.runtime_done_acks.clear();
        });
    }

    /// Every Runtime API call the extension made, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Every telemetry POST attempt, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Every event of every acknowledged telemetry POST, in delivery order.
    pub fn delivered_events(&self) -> Vec<Value> {
        self.shared.lock().delivered_events.clone()
    }

    /// Every event handed out on `/next` (INVOKE / SHUTDOWN), with the hand-out time.
    pub fn handed_out_events(&self) -> Vec<(Duration, Value)> {
        self.shared.lock().handed_out.clone()
    }

    /// The time of every `/next` call.
    pub fn next_call_times(&self) -> Vec<Duration> {
        self.shared.lock().next_calls.clone()
    }

    /// The accepted subscribe body.
    pub fn subscription(&self) -> Option<Value> {
        self.shared
            .lock()
            .subscription
            .as_ref()
            .map(|s| s.body.clone())
    }

    pub fn registration(&self) -> Option<Registration> {
        self.shared.lock().registration.clone()
    }

    /// The child's stdout and stderr lines so far.
    pub fn output(&self) -> String {
        self.shared.lock().output.clone()
    }

    /// `None` while running; the exit code, or 128 + signal number if killed by a signal.
    pub fn exit_status(&self) -> Option<i32> {
        self.shared.lock().exit
    }

    pub fn is_frozen(&self) -> bool {
        self.shared.lock().frozen
    }
}
