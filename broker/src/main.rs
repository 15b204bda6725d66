//! `netjaild`: the netjail broker daemon. Everything it does is in the library's
//! `netjail_broker::daemon`.

fn main() -> anyhow::Result<()> {
    netjail_broker::daemon::main()
}
