# Only the raw hive: colmena reads it only with --legacy-flake-eval, through
# its own eval.nix; its default flake evaluation wants colmenaHive.
{
  outputs = { self }: {
    colmena = {
      meta.nixpkgs = { system = "x86_64-linux"; };
      web = { deployment.targetHost = "web.example.org"; };
    };
  };
}
