# deploy.nodes.web lacks hostname, which deploy-rs requires (src/data.rs:
# NodeSettings.hostname is not optional; interface.json lists it required).
{
  outputs = { self }: {
    deploy.nodes.web.profiles.system = {
      user = "root";
      path = derivation { name = "activatable-x"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "mkdir $out" ]; };
    };
  };
}
