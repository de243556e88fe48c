// The node proxy arrives with the ztunnel issue; this entry point keeps the layout whole until then.
Console.Error.WriteLine("ztunnel: not built yet");
return 1;
