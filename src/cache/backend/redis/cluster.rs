//! Redis Cluster routing: multi-key commands split by slot (one node each), and the
//! masters asked one by one where a command is per node (`INFO`, `SCAN`).

use super::*;

impl Shared {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Commands on one key each, in one round trip: one pipeline on a server; on a
    /// cluster (whose pipelines must stay in one slot) one pipeline per slot, sent at once,
    /// so the commands for each node travel together on its connection. The replies come
    /// back in the order of `commands`.
    pub(super) async fn run_each(
        &self,
        commands: Vec<(&str, redis::Cmd)>,
        timeout: Duration,
        gate: Gate,
    ) -> StoreResult<Vec<Value>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_cluster() {
            let mut pipe = redis::pipe();
            for (_, cmd) in commands {
                pipe.add_command(cmd);
            }
            return self.run(&pipe, timeout, gate).await;
        }
        let mut groups: Vec<(Slot, Vec<usize>, redis::Pipeline)> = Vec::new();
        for (i, (key, cmd)) in commands.into_iter().enumerate() {
            let slot = Slot::for_key(key);
            let at = match groups.iter().position(|(s, _, _)| *s == slot) {
                Some(at) => at,
                None => {
                    groups.push((slot, Vec::new(), redis::pipe()));
                    groups.len() - 1
                }
            };
            groups[at].1.push(i);
            groups[at].2.add_command(cmd);
        }
        let replies = futures_util::future::try_join_all(
            groups
                .iter()
                .map(|(_, _, pipe)| self.run::<Vec<Value>>(pipe, timeout, gate)),
        )
        .await?;
        let mut out = vec![Value::Nil; groups.iter().map(|(_, at, _)| at.len()).sum()];
        for ((_, at, _), values) in groups.iter().zip(replies) {
            for (i, value) in at.iter().zip(values) {
                out[*i] = value;
            }
        }
        Ok(out)
    }

    /// The masters of a cluster, as `(host, port)`; empty on one server.
    pub(super) async fn masters(&self, timeout: Duration) -> StoreResult<Vec<(String, u16)>> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let nodes: String = self
            .run(redis::cmd("CLUSTER").arg("NODES"), timeout, Gate::Open)
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let address = fields.nth(1)?;
                let flags = fields.next()?;
                let is_live_master = flags.split(',').any(|f| f == "master")
                    && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
                let (host, port) = address.split('@').next()?.rsplit_once(':')?;
                is_live_master.then(|| Some((host.to_string(), port.parse().ok()?)))?
            })
            .collect())
    }

    /// `INFO sections`: one reply, or one per master of a cluster.
    pub(super) async fn info(
        &self,
        sections: &[&str],
        timeout: Duration,
        gate: Gate,
    ) -> StoreResult<Vec<String>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(sections);
        if !self.is_cluster() {
            return Ok(vec![self.run(&cmd, timeout, gate).await?]);
        }
        let mut infos = Vec::new();
        for (host, port) in self.masters(timeout).await? {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            infos.push(
                self.run(Query::Routed(&cmd, &routing), timeout, gate)
                    .await?,
            );
        }
        Ok(infos)
    }
}
