from target_klaviyo.sandbox.cli import main

main()
