# A flake with a system and no fleet declaration.
{
  outputs = { self }: {
    nixosConfigurations.web.config.system.build.toplevel =
      derivation { name = "nixos-system-web"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
  };
}
