from klaviyo_sandbox.cli import main

main()
